"""The lexicon of the sample grammar: a few hundred words of child-directed English, written by hand.

Every entry lists all of its forms explicitly (no morphological rules), so irregular plurals, irregular pasts and
participles are data, and the minimal-pair alternations (is/are, this/these, himself/herself, went/goed,
ate/eaten, ...) are read from here by both the generator and the tests. Tables keep their written order: nothing
depends on set or dict iteration of unhashable things.
"""

from __future__ import annotations

from typing import NamedTuple


class Noun(NamedTuple):
    sg: str
    pl: str  # == sg for invariant plurals (sheep, fish, deer); "" for mass nouns (milk)
    cls: str  # person animal food drink toy thing clothes nature bit (rock, stick) place body
    gender: str  # "m" / "f" for gendered people, "" otherwise

    @property
    def invariant(self) -> bool:
        return self.pl == self.sg

    @property
    def mass(self) -> bool:
        return self.pl == ""

    @property
    def countable_agreeing(self) -> bool:
        """Singular and plural spelled differently: usable for number-agreement minimal pairs."""
        return bool(self.pl) and self.pl != self.sg


class Verb(NamedTuple):
    base: str
    s3: str
    past: str
    part: str
    ing: str
    over: str  # over-regularised past ("goed") of an irregular verb; "*" irregular without one; "" regular
    subj: tuple[str, ...]  # noun classes allowed as subject
    obj: tuple[str, ...]  # noun classes allowed as object ((): intransitive only)
    prep: str  # preposition before the object ("at" in "look at"), "" if none
    comp: str  # kind of intransitive complement ("" : no intransitive use)
    flags: str  # r: reflexive object ok; d: dative (give X to Y); p: needs a location (put X on Y); s: stative

    @property
    def irregular(self) -> bool:
        return self.over != ""

    def bad_pasts(self) -> tuple[str, ...]:
        """Ungrammatical stand-ins for the past form in "<subject> <past> ...": over-regularised and/or participle.
        Empty when the past equals the base (read, hurt, put, cut): such a past is not used for pairs."""
        if not self.irregular or self.past == self.base:
            return ()
        alts = [self.over] if self.over != "*" else []
        if self.part not in (self.past, self.base):
            alts.append(self.part)
        return tuple(alts)


class Adj(NamedTuple):
    word: str
    classes: tuple[str, ...]  # noun classes it can describe


class Name(NamedTuple):
    word: str
    gender: str  # "m" / "f"


# singular plural class gender; plural "=" means invariant, "-" mass; gender "-" none
_NOUNS = """
boy boys person m|girl girls person f|man men person m|woman women person f|baby babies person -
child children person -|kid kids person -|brother brothers person m|sister sisters person f
king kings person m|queen queens person f|prince princes person m|princess princesses person f
lady ladies person f|teacher teachers person -|friend friends person -|doctor doctors person -
farmer farmers person -|clown clowns person -|daddy daddies person m|mommy mommies person f
dog dogs animal -|cat cats animal -|bird birds animal -|fish = animal -|duck ducks animal -
cow cows animal -|horse horses animal -|pig pigs animal -|sheep = animal -|frog frogs animal -
bunny bunnies animal -|bear bears animal -|lion lions animal -|monkey monkeys animal -
mouse mice animal -|goose geese animal -|chicken chickens animal -|puppy puppies animal -
kitty kitties animal -|elephant elephants animal -|tiger tigers animal -|fox foxes animal -
wolf wolves animal -|bee bees animal -|butterfly butterflies animal -|owl owls animal -
turtle turtles animal -|snake snakes animal -|giraffe giraffes animal -|squirrel squirrels animal -
deer = animal -|apple apples food -|banana bananas food -|cookie cookies food -|cake cakes food -
sandwich sandwiches food -|egg eggs food -|carrot carrots food -|grape grapes food -
strawberry strawberries food -|cracker crackers food -|muffin muffins food -|potato potatoes food -
tomato tomatoes food -|peach peaches food -|pear pears food -|cupcake cupcakes food -
pancake pancakes food -|bean beans food -|cheese - food -|bread - food -|soup - food -|rice - food -
cereal - food -|milk - drink -|juice - drink -|water - drink -|ball balls toy -|block blocks toy -
doll dolls toy -|truck trucks toy -|car cars toy -|train trains toy -|boat boats toy -|book books toy -
puzzle puzzles toy -|kite kites toy -|drum drums toy -|balloon balloons toy -|crayon crayons toy -
plane planes toy -|bike bikes toy -|bus buses toy -|toy toys toy -|robot robots toy -|cup cups thing -
spoon spoons thing -|bowl bowls thing -|plate plates thing -|box boxes thing -|bottle bottles thing -
chair chairs thing -|table tables thing -|bed beds thing -|blanket blankets thing -|pillow pillows thing -
door doors thing -|window windows thing -|brush brushes thing -|key keys thing -|clock clocks thing -
picture pictures thing -|bag bags thing -|basket baskets thing -|knife knives thing -|dish dishes thing -
glass glasses thing -|shelf shelves thing -|towel towels thing -|hat hats clothes -|shoe shoes clothes -
sock socks clothes -|coat coats clothes -|shirt shirts clothes -|boot boots clothes -
mitten mittens clothes -|jacket jackets clothes -|flower flowers nature -|tree trees nature -
rock rocks bit -|stick sticks bit -|leaf leaves bit -|star stars nature -|shell shells bit -
puddle puddles nature -|park parks place -|store stores place -|zoo zoos place -|beach beaches place -
farm farms place -|garden gardens place -|kitchen kitchens place -|house houses place -
school schools place -|yard yards place -|pond ponds place -|forest forests place -|river rivers place -
playground playgrounds place -|hand hands body -|foot feet body -|tooth teeth body -|nose noses body -
face faces body -|ear ears body -|finger fingers body -|toe toes body -|knee knees body -|head heads body -
"""

# base 3sg past participle -ing over-regularised subject-classes object-classes prep complement flags
# ("-": empty; over-regularised "*": irregular, no over-regularised form used)
_P, _A = "person", "person,animal"
_CONCRETE = "person,animal,food,toy,thing,nature,bit,clothes"
_VERBS = f"""
go      goes      went      gone      going      goed      {_A}       -                            -    dir  -
come    comes     came      come      coming     comed     {_A}       -                            -    dir  -
eat     eats      ate       eaten     eating     eated     {_A}       food                         -    loc  -
drink   drinks    drank     drunk     drinking   drinked   {_A}       drink                        -    loc  -
see     sees      saw       seen      seeing     *         {_A}       {_CONCRETE}                  -    -    rs
take    takes     took      taken     taking     taked     {_P}       food,toy,thing               -    -    d
give    gives     gave      given     giving     gived     {_P}       food,toy,thing               -    -    d
run     runs      ran       run       running    runned    {_A}       -                            -    dir  -
fall    falls     fell      fallen    falling    falled    {_A}       -                            -    fall -
break   breaks    broke     broken    breaking   breaked   {_P}       toy,thing                    -    -    -
make    makes     made      made      making     maked     {_P}       food,toy                     -    -    -
find    finds     found     found     finding    finded    {_A}       food,toy,thing,clothes       -    -    -
throw   throws    threw     thrown    throwing   throwed   {_P}       toy,bit                      -    -    d
catch   catches   caught    caught    catching   catched   {_A}       toy                          -    -    -
sing    sings     sang      sung      singing    *         {_A}       -                            -    loc  -
swim    swims     swam      swum      swimming   swimmed   {_A}       -                            -    loc  -
fly     flies     flew      flown     flying     flyed     animal,toy -                            -    dir  -
sleep   sleeps    slept     slept     sleeping   sleeped   {_A}       -                            -    loc  -
sit     sits      sat       sat       sitting    sitted    {_A}       -                            -    sit  -
hold    holds     held      held      holding    holded    {_P}       {_CONCRETE}                  -    -    -
get     gets      got       gotten    getting    getted    {_A}       food,toy,thing,drink         -    -    -
buy     buys      bought    bought    buying     buyed     {_P}       food,toy,clothes             -    -    d
bring   brings    brought   brought   bringing   bringed   {_A}       food,toy,thing               -    -    d
draw    draws     drew      drawn     drawing    drawed    {_P}       animal,nature,person         -    -    -
read    reads     read      read      reading    readed    {_P}       toy                          -    -    -
ride    rides     rode      ridden    riding     rided     {_P}       toy,animal                   -    -    -
hide    hides     hid       hidden    hiding     hided     {_A}       toy,food                     -    loc  r
drive   drives    drove     driven    driving    drived    {_P}       toy                          -    -    -
write   writes    wrote     written   writing    writed    {_P}       -                            -    loc  -
wear    wears     wore      worn      wearing    weared    {_A}       clothes                      -    -    -
hurt    hurts     hurt      hurt      hurting    hurted    {_A}       body                         -    -    r
cut     cuts      cut       cut       cutting    cutted    {_P}       food,body                    -    -    r
feed    feeds     fed       fed       feeding    feeded    {_P}       animal,person                -    -    r
dig     digs      dug       dug       digging    digged    {_A}       -                            -    loc  -
blow    blows     blew      blown     blowing    blowed    {_P}       -                            -    loc  -
build   builds    built     built     building   builded   {_P}       -                            -    loc  -
lose    loses     lost      lost      losing     losed     {_A}       toy,clothes                  -    -    -
keep    keeps     kept      kept      keeping    keeped    {_A}       toy,food                     -    -    -
teach   teaches   taught    taught    teaching   teached   {_P}       animal                       -    -    r
leave   leaves    left      left      leaving    leaved    {_A}       toy,clothes,food             -    -    -
hear    hears     heard     heard     hearing    heared    {_A}       animal,person                -    -    s
bite    bites     bit       bitten    biting     bited     {_A}       food,toy                     -    -    -
shake   shakes    shook     shaken    shaking    shaked    {_A}       toy,thing                    -    -    -
wake    wakes     woke      woken     waking     *         {_A}       -                            -    up   -
stand   stands    stood     stood     standing   standed   {_A}       -                            -    up   -
forget  forgets   forgot    forgotten forgetting forgetted {_A}       toy,clothes                  -    -    -
put     puts      put       put       putting    *         {_P}       toy,thing,food,clothes       -    -    p
play    plays     played    played    playing    -         {_A}       toy,person,animal            with loc  -
jump    jumps     jumped    jumped    jumping    -         {_A}       -                            -    loc  -
walk    walks     walked    walked    walking    -         {_A}       -                            -    dir  -
kick    kicks     kicked    kicked    kicking    -         {_A}       toy,bit                      -    -    -
push    pushes    pushed    pushed    pushing    -         {_A}       toy,thing                    -    -    -
pull    pulls     pulled    pulled    pulling    -         {_A}       toy,thing                    -    -    -
wash    washes    washed    washed    washing    -         {_P}       body,thing,toy,animal        -    -    r
dry     dries     dried     dried     drying     -         {_P}       body,thing,animal            -    -    r
dress   dresses   dressed   dressed   dressing   -         {_P}       toy,person                   -    -    r
help    helps     helped    helped    helping    -         {_A}       person,animal                -    -    r
like    likes     liked     liked     liking     -         {_A}       food,toy,animal,drink,person -    -    s
love    loves     loved     loved     loving     -         {_A}       food,toy,animal,person       -    -    s
want    wants     wanted    wanted    wanting    -         {_A}       food,toy,drink               -    -    s
look    looks     looked    looked    looking    -         {_A}       {_CONCRETE}                  at   -    r
watch   watches   watched   watched   watching   -         {_A}       animal,person,toy            -    -    -
clean   cleans    cleaned   cleaned   cleaning   -         {_P}       thing,toy                    -    -    r
open    opens     opened    opened    opening    -         {_P}       thing                        -    -    -
close   closes    closed    closed    closing    -         {_P}       thing                        -    -    -
cook    cooks     cooked    cooked    cooking    -         {_P}       food                         -    loc  -
climb   climbs    climbed   climbed   climbing   -         {_A}       thing,nature                 -    -    -
hug     hugs      hugged    hugged    hugging    -         {_A}       person,animal,toy            -    -    -
kiss    kisses    kissed    kissed    kissing    -         {_A}       person,animal                -    -    -
touch   touches   touched   touched   touching   -         {_A}       toy,animal,thing,body        -    -    -
fix     fixes     fixed     fixed     fixing     -         {_P}       toy,thing                    -    -    -
paint   paints    painted   painted   painting   -         {_P}       toy,thing                    -    -    -
bake    bakes     baked     baked     baking     -         {_P}       food                         -    -    -
carry   carries   carried   carried   carrying   -         {_A}       toy,food,thing               -    -    -
cry     cries     cried     cried     crying     -         {_A}       -                            -    loc  -
laugh   laughs    laughed   laughed   laughing   -         {_A}       -                            -    loc  -
smile   smiles    smiled    smiled    smiling    -         {_P}       -                            -    loc  -
dance   dances    danced    danced    dancing    -         {_A}       -                            -    loc  -
hop     hops      hopped    hopped    hopping    -         {_A}       -                            -    dir  -
roll    rolls     rolled    rolled    rolling    -         {_A}       toy                          -    dir  -
splash  splashes  splashed  splashed  splashing  -         {_A}       -                            -    loc  -
scratch scratches scratched scratched scratching -         {_A}       body,toy                     -    -    r
cover   covers    covered   covered   covering   -         {_P}       toy,thing                    -    -    r
clap    claps     clapped   clapped   clapping   -         {_P}       -                            -    loc  -
count   counts    counted   counted   counting   -         {_P}       toy,food,animal              -    -    -
share   shares    shared    shared    sharing    -         {_P}       food,toy                     -    -    -
visit   visits    visited   visited   visiting   -         {_P}       person                       -    -    -
call    calls     called    called    calling    -         {_P}       person,animal                -    -    -
chase   chases    chased    chased    chasing    -         {_A}       animal,toy                   -    -    -
lick    licks     licked    licked    licking    -         animal     food,body                    -    -    -
fill    fills     filled    filled    filling    -         {_P}       thing                        -    -    -
wave    waves     waved     waved     waving     -         {_P}       -                            -    loc  -
yawn    yawns     yawned    yawned    yawning    -         {_A}       -                            -    loc  -
talk    talks     talked    talked    talking    -         {_P}       person,animal                to   loc  -
wait    waits     waited    waited    waiting    -         {_A}       person,animal                for  loc  -
listen  listens   listened  listened  listening  -         {_A}       person,animal                to   -    -
drop    drops     dropped   dropped   dropping   -         {_A}       toy,food,thing               -    -    -
enjoy   enjoys    enjoyed   enjoyed   enjoying   -         {_P}       food,toy                     -    -    r
brush   brushes   brushed   brushed   brushing   -         {_P}       body,animal                  -    -    r
smell   smells    smelled   smelled   smelling   -         {_A}       food,nature                  -    -    -
bark    barks     barked    barked    barking    -         animal     -                            -    loc  -
"""

# adjective and the noun classes it describes
_ANIMATE, _OBJ = "person,animal", "toy,thing,clothes,nature,bit,food"
_ADJS = f"""
big any|little any|small any|tiny any|red {_OBJ},animal|blue {_OBJ}|green {_OBJ},animal|yellow {_OBJ},animal
pink {_OBJ},animal|purple {_OBJ}|brown {_OBJ},animal|black {_OBJ},animal|white {_OBJ},animal|new {_OBJ}
old any|pretty any|happy {_ANIMATE}|sad {_ANIMATE}|hungry {_ANIMATE}|tired {_ANIMATE}|sleepy {_ANIMATE}
silly {_ANIMATE}|funny {_ANIMATE},toy|nice {_ANIMATE},food|good {_ANIMATE},food|naughty {_ANIMATE}
grumpy {_ANIMATE}|brave {_ANIMATE}|yummy food|hot food,drink|cold food,drink|sweet food|sticky food,toy
crunchy food|soft toy,thing,clothes,animal|round toy,thing,food|shiny toy,thing,bit|heavy toy,thing,bit
empty thing|wet {_OBJ},animal|dirty any|fluffy animal,toy,thing|loud toy,animal|fast toy,animal|scary animal
"""

_NAMES = """
Tom m|Max m|Ben m|Jack m|Leo m|Jake m|Nick m|Luke m|Adam m|Peter m|Oscar m|Harry m|Noah m|Sam m|Mia f|Emma f
Lily f|Anna f|Sara f|Lucy f|Kate f|Ella f|Zoe f|Grace f|Ruby f|Amy f|Julia f|Rose f|Mommy f|Daddy m|Grandma f
Grandpa m
"""


def _rows(table: str) -> list[list[str]]:
    return [item.split() for line in table.strip().splitlines() for item in line.split("|") if item.strip()]


def _classes(field: str) -> tuple[str, ...]:
    return () if field == "-" else tuple(field.split(","))


def _dash(field: str) -> str:
    return "" if field == "-" else field


NOUNS: tuple[Noun, ...] = tuple(
    Noun(sg, {"=": sg, "-": ""}.get(pl, pl), cls, _dash(g)) for sg, pl, cls, g in _rows(_NOUNS))
VERBS: tuple[Verb, ...] = tuple(
    Verb(b, s3, past, part, ing, _dash(over), _classes(subj), _classes(obj), _dash(prep), _dash(comp), _dash(flags))
    for b, s3, past, part, ing, over, subj, obj, prep, comp, flags in _rows(_VERBS))
ADJS: tuple[Adj, ...] = tuple(
    Adj(w, ("person", "animal", "toy", "thing", "clothes", "nature", "bit", "food") if c == "any" else _classes(c))
    for w, c in _rows(_ADJS))
NAMES: tuple[Name, ...] = tuple(Name(w, g) for w, g in _rows(_NAMES))

PREPS_NP = ("near", "under", "on", "in", "with", "behind")  # prepositions of noun-modifying PPs
ADVERBS = ("today", "again", "outside", "too")
# subject pronoun -> (number, person, gender, object form, reflexive)
PRONOUNS: dict[str, tuple[str, int, str, str, str]] = {
    "I": ("sg", 1, "", "me", "myself"),
    "you": ("sg", 2, "", "you", "yourself"),
    "he": ("sg", 3, "m", "him", "himself"),
    "she": ("sg", 3, "f", "her", "herself"),
    "it": ("sg", 3, "n", "it", "itself"),
    "we": ("pl", 1, "", "us", "ourselves"),
    "they": ("pl", 3, "", "them", "themselves"),
}
POSSESSIVE = {"I": "my", "you": "your", "he": "his", "she": "her", "it": "its", "we": "our", "they": "their"}
REFLEXIVES = ("myself", "yourself", "himself", "herself", "itself", "ourselves", "themselves")
# singular <-> plural determiners used for determiner-noun agreement pairs ("a"/"an" <-> "many")
DET_SWAP = {"this": "these", "these": "this", "that": "those", "those": "that", "many": "a", "a": "many",
            "an": "many"}
# singular <-> plural finite forms of the auxiliaries / copula
AUX_SWAP = {"is": "are", "are": "is", "was": "were", "were": "was", "has": "have", "have": "has",
            "does": "do", "do": "does", "doesn't": "don't", "don't": "doesn't", "isn't": "aren't",
            "aren't": "isn't", "wasn't": "weren't", "weren't": "wasn't"}
AUXILIARIES = ("is", "are", "am", "was", "were", "has", "have", "does", "do", "did", "can", "will")
FUNCTION_WORDS = (
    "the a an this that these those some many two three my your his her its our their me him us them who "
    "what where to at for of and then yes no okay not there here named once upon time one day very home down "
    "up away off floor by so let's don't can't didn't isn't aren't wasn't weren't doesn't"
).split()


def verb(base: str) -> Verb:
    """The verb entry of `base` (KeyError if absent)."""
    return _VERB_BY_BASE[base]


_VERB_BY_BASE = {v.base: v for v in VERBS}


def lemmas() -> list[str]:
    """Every lemma of the lexicon (nouns, verbs, adjectives, names, pronouns, auxiliaries, function words)."""
    words = [n.sg for n in NOUNS] + [v.base for v in VERBS] + [a.word for a in ADJS] + [n.word for n in NAMES]
    words += list(PRONOUNS) + list(AUXILIARIES) + list(PREPS_NP) + list(ADVERBS) + FUNCTION_WORDS
    return list(dict.fromkeys(words))


def word_forms() -> list[str]:
    """Every inflected form the lexicon can produce (sorted, unique)."""
    forms = set(lemmas())
    for n in NOUNS:
        forms.update(f for f in (n.sg, n.pl) if f)
    for v in VERBS:
        forms.update((v.base, v.s3, v.past, v.part, v.ing))
    forms.update(p[3] for p in PRONOUNS.values())
    forms.update(REFLEXIVES)
    forms.update(POSSESSIVE.values())
    return sorted(forms)
