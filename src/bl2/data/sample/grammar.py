"""The probabilistic grammar of the sample corpus: noun phrases, clauses, declaratives and yes/no questions.

Every phrase is a list of lower-case words (names and "I" capitalised) plus `Mark`s: where a minimal pair can be
made from it, and how. A mark says which phenomenon it tests, the index of the word, and the ungrammatical
replacement(s) of that word (or, for auxiliary inversion, where the auxiliary would wrongly go). The grammar only
ever produces the grammatical form; the marks are what `pairs.py` turns into the bad sentence of a pair, so each
pair differs from a grammatical sentence of the same grammar in exactly the targeted word.

Agreement is enforced everywhere: finite verbs and auxiliaries agree with the subject (also across adjectives,
prepositional phrases and relative clauses on the subject), determiners with their noun, reflexives with the
subject's person, number and gender, and past-tense forms come from the lexicon (irregulars included).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from bl2.data.sample import lexicon as lx

SVA = "subject_verb_agreement"
DNA = "determiner_noun_agreement"
ANA = "anaphor_agreement"
IRR = "irregular_past_tense"
AUX = "aux_inversion_questions"

T = TypeVar("T")


class Mark(NamedTuple):
    """A place where a minimal pair can be made: replace words[index] by one of `alts`, or (move_to >= 0) move
    words[index] so that it ends up at position move_to of the sentence."""

    phen: str
    index: int
    alts: tuple[str, ...] = ()
    move_to: int = -1

    def shifted(self, k: int) -> Mark:
        return Mark(self.phen, self.index + k, self.alts, self.move_to + k if self.move_to >= 0 else -1)


@dataclass
class Phrase:
    words: list[str] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    def add(self, *parts: Phrase | str) -> Phrase:
        """Append words ("a b" strings are split) or phrases (their marks shifted); returns self."""
        for part in parts:
            if isinstance(part, str):
                self.words.extend(part.split())
            else:
                k = len(self.words)
                self.marks.extend(m.shifted(k) for m in part.marks)
                self.words.extend(part.words)
        return self


@dataclass
class NP(Phrase):
    num: str = "sg"
    person: int = 3
    gender: str = ""  # m / f / n (non-human) / "" (unknown human, "I", "you", "we", "they")
    cls: str = "person"
    pron: str = "it"  # subject pronoun that refers back to it
    agree: bool = True  # a 3rd-person subject whose number is visible: carries agreement marks
    rc_aux: int = -1  # index of the auxiliary of its relative clause, if any


@dataclass
class Clause:
    subj: NP
    vform: str  # pres past prog pastprog perf can will cop pastcop
    verb: lx.Verb | None  # None for the copula
    rest: Phrase  # objects and complements, or the copula's predicate
    neg: bool = False


def _index(items: Iterable[T], key: Callable[[T], Iterable[str]]) -> dict[str, tuple[T, ...]]:
    """Group `items` by each of their keys, keeping the items' order (deterministic)."""
    out: dict[str, list[T]] = {}
    for item in items:
        for k in key(item):
            out.setdefault(k, []).append(item)
    return {k: tuple(v) for k, v in out.items()}


NOUNS_BY_CLASS = _index(lx.NOUNS, lambda n: (n.cls,))
AGREEING_BY_CLASS = _index([n for n in lx.NOUNS if n.countable_agreeing], lambda n: (n.cls,))
GENDERED_PEOPLE = tuple(n for n in lx.NOUNS if n.cls == "person" and n.gender)
ADJS_BY_CLASS = _index(lx.ADJS, lambda a: a.classes)
# irregular verbs count twice: they are the frequent ones of child-directed speech (go, eat, see, get, make, ...)
VERBS_BY_SUBJ = _index(lx.VERBS + tuple(v for v in lx.VERBS if v.irregular), lambda v: v.subj)
INTRANS_BY_SUBJ = _index([v for v in lx.VERBS if v.comp in ("loc", "dir")], lambda v: v.subj)
REFL_BY_SUBJ = _index([v for v in lx.VERBS if "r" in v.flags], lambda v: v.subj)
IRREGULAR_BY_SUBJ = _index([v for v in lx.VERBS if v.bad_pasts()], lambda v: v.subj)
SIZES = ("big", "little", "small", "tiny", "old", "new", "pretty")
COLOURS = ("red", "blue", "green", "yellow", "pink", "purple", "brown", "black", "white")
LOCATIONS = ("on the table", "on the floor", "in the box", "under the bed", "in the kitchen", "on the chair",
             "in the garden", "in the bag", "behind the door", "in the basket")
COMPLEMENTS = {
    "dir": ("to the @place", "to the @place", "home", "outside", "away", "to the @place with @person"),
    "loc": ("", "", "", "in the @place", "at the @place", "@adv", "with @person"),
    "fall": ("down", "down", "off the chair", "off the bed", "in the puddle", "into the pond"),
    "sit": ("on the chair", "on the floor", "down", "on the bed", "next to @person"),
    "up": ("up", "up"),
}
VFORMS = (("pres", .18), ("past", .26), ("prog", .2), ("pastprog", .05), ("perf", .04), ("can", .08),
          ("will", .05), ("cop", .1), ("pastcop", .04))
PAST_VFORMS = (("past", .66), ("pastprog", .15), ("pastcop", .16), ("perf", .03))
DETS_SG = (("the", .42), ("a", .22), ("this", .08), ("that", .08), ("my", .05), ("your", .11), ("his", .02),
           ("her", .02))
DETS_PL = (("the", .36), ("these", .12), ("those", .1), ("some", .1), ("many", .04), ("two", .08),
           ("three", .04), ("your", .1), ("my", .04), ("our", .02))
DETS_MASS = (("the", .4), ("some", .3), ("your", .2), ("my", .1))


class Grammar:
    """All random choices go through self.r, a `random.Random`: same seed, same sentences."""

    def __init__(self, rng: random.Random):
        self.r = rng

    def pick(self, seq: Sequence[T]) -> T:
        return seq[self.r.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def weighted(self, options: Sequence[tuple[T, float]]) -> T:
        x = self.r.random() * sum(w for _, w in options)
        for item, w in options:
            x -= w
            if x < 0:
                return item
        return options[-1][0]

    # ---- noun phrases -------------------------------------------------------------------------------------------

    def noun_np(self, classes: Sequence[str], *, num: str = "", adj_p: float = .25, pp_p: float = 0.,
                rc_p: float = 0., rc_past: bool = False, dets: Sequence[tuple[str, float]] = (),
                agreeing: bool = False, gendered: bool = False) -> NP:
        """det (adjectives) noun (PP) (relative clause). `agreeing`: only nouns with distinct sg/pl forms."""
        cls = self.pick(classes)
        pool = GENDERED_PEOPLE if gendered else (AGREEING_BY_CLASS if agreeing else NOUNS_BY_CLASS)[cls]
        if gendered:
            cls = "person"
        noun = self.pick(pool)
        num = "sg" if noun.mass else (num or ("pl" if self.chance(.35) else "sg"))
        head = noun.sg if num == "sg" else noun.pl
        adjs: list[str] = []
        if self.chance(adj_p) and cls in ADJS_BY_CLASS:
            if cls in ("toy", "thing", "clothes") and self.chance(.25):  # "the big red truck"
                adjs = [self.pick(SIZES), self.pick(COLOURS)]
            else:
                adjs = [self.pick(ADJS_BY_CLASS[cls]).word]
        table = DETS_MASS if noun.mass else DETS_SG if num == "sg" else DETS_PL
        if dets:  # keep the requested determiners that fit the noun's number
            fits = {d for d, _ in table} | {"the"}
            table = tuple((d, w) for d, w in dets if d in fits) or (("the", 1.),)
        det = self.weighted(table)
        first = (adjs + [head])[0]
        vowel = first[0] in "aeiou"
        det = "an" if det == "a" and vowel else det
        gender = noun.gender or ("" if cls == "person" else "n")
        np = NP(num=num, gender=gender, cls=cls, agree=noun.countable_agreeing or noun.mass,
                pron="they" if num == "pl" else {"m": "he", "f": "she", "n": "it"}.get(gender, "")
                or self.pick(("he", "she")))
        np.words.append(det)
        if det in lx.DET_SWAP and noun.countable_agreeing:
            alt = lx.DET_SWAP[det]
            np.marks.append(Mark(DNA, 0, ("an" if alt == "a" and vowel else alt,)))
        np.add(*adjs, head)
        if pp_p and self.chance(pp_p):
            prep = self.pick(lx.PREPS_NP)
            classes = ("thing",) if prep in ("in", "on", "under") else ("animal", "toy", "thing", "nature", "person")
            np.add(prep, self.noun_np(classes, adj_p=.15, dets=(("the", 1),)))
        elif rc_p and self.chance(rc_p):  # never after a PP: "who" must follow its head noun
            self.add_rc(np, rc_past)
        return np

    def add_rc(self, np: NP, past: bool) -> None:
        """"who/that is happy", "that was sleeping": the auxiliary agrees with the head noun."""
        aux = self.be(np, past)
        np.add("who" if np.cls == "person" else "that")
        np.rc_aux = len(np.words)
        if np.agree:
            np.marks.append(Mark(SVA, np.rc_aux, (lx.AUX_SWAP[aux],)))
        pool = INTRANS_BY_SUBJ.get(np.cls, ())
        pred = self.pick(pool).ing if pool and self.chance(.5) else self.pick(ADJS_BY_CLASS[np.cls]).word
        np.add(aux, pred)

    def pronoun(self, word: str, cls: str = "") -> NP:
        num, person, gender, _, _ = lx.PRONOUNS[word]
        cls = cls or ("animal" if word == "it" else "person")
        return NP([word], [], num, person, gender, cls, word, person == 3)

    def name(self) -> NP:
        n = self.pick(lx.NAMES)
        return NP([n.word], [], "sg", 3, n.gender, "person", "he" if n.gender == "m" else "she", True)

    def subject(self, *, pp_p: float = .1, rc_p: float = .04, past: bool = False) -> NP:
        kind = self.weighted((("you", .2), ("we", .07), ("I", .07), ("pron3", .1), ("name", .16), ("np", .4)))
        if kind in ("you", "we", "I"):
            return self.pronoun(kind)
        if kind == "pron3":
            word = self.pick(("he", "she", "it", "they"))
            return self.pronoun(word, "animal" if word == "it" else self.pick(("person", "animal")))
        if kind == "name":
            return self.name()
        return self.noun_np(("person", "person", "animal", "animal"), pp_p=pp_p, rc_p=rc_p, rc_past=past)

    def obj(self, classes: Sequence[str], subj: NP) -> NP:
        cls = self.pick(classes)
        if cls == "body":
            return self.body(subj)
        if cls == "person" and self.chance(.3):
            return self.name()
        if self.chance(.1):
            word = "it" if cls != "person" else self.pick(("him", "her", "me", "us"))
            return NP([word], [], cls=cls, agree=False)
        return self.noun_np((cls,), adj_p=.3)

    def body(self, owner: NP) -> NP:
        """"his hands", "your nose": the possessive refers back to `owner`."""
        noun = self.pick(NOUNS_BY_CLASS["body"])
        num = owner.num if noun.sg in ("nose", "face", "head") else self.pick(("sg", "pl"))
        if owner.person < 3 or owner.words == ["it"]:
            poss = lx.POSSESSIVE[owner.words[0]]
        elif owner.num == "pl":
            poss = "their"
        else:
            poss = {"m": "his", "f": "her", "n": "its"}.get(owner.gender) or self.pick(("his", "her"))
        return NP([poss, noun.sg if num == "sg" else noun.pl], [], num, cls="body", agree=False)

    def reflexive(self, subj: NP) -> Phrase:
        """The reflexive bound by `subj`, marked with its wrong-gender/number alternatives for 3rd-person people."""
        if subj.person < 3 or subj.words == ["it"]:
            return Phrase([lx.PRONOUNS[subj.words[0]][4]])
        if subj.num == "pl":
            word = "themselves"
            alts = {"m": ("himself",), "f": ("herself",)}.get(subj.gender, ("himself", "herself"))
        else:
            word = {"m": "himself", "f": "herself", "n": "itself"}.get(subj.gender) or self.pick(("himself", "herself"))
            alts = {"m": ("herself",), "f": ("himself",)}.get(subj.gender, ())
        ok = subj.cls == "person" and bool(alts)
        return Phrase([word], [Mark(ANA, 0, alts)] if ok else [])

    # ---- clauses ------------------------------------------------------------------------------------------------

    def be(self, subj: NP, past: bool) -> str:
        if subj.words == ["I"]:
            return "was" if past else "am"
        sg = subj.num == "sg" and subj.words != ["you"]
        return ("was" if sg else "were") if past else ("is" if sg else "are")

    def clause(self, subj: NP | None = None, vform: str = "", *, refl_p: float = .1, past: bool = False,
               verb: lx.Verb | None = None) -> Clause:
        subj = subj or self.subject(past=past)
        vform = vform or self.weighted(PAST_VFORMS if past else VFORMS)
        pool = VERBS_BY_SUBJ.get(subj.cls, ())
        if vform in ("cop", "pastcop") or not pool:
            return Clause(subj, "pastcop" if vform in ("past", "pastprog", "pastcop") else "cop", None,
                          self.predicate(subj))
        if verb is None and subj.cls in REFL_BY_SUBJ and self.chance(.08):  # "the girls washed themselves"
            verb, refl_p = self.pick(REFL_BY_SUBJ[subj.cls]), max(refl_p, .6)
        verb = verb or self.pick(pool)
        if "s" in verb.flags and vform in ("prog", "pastprog"):  # no "we are wanting"
            vform = "past" if vform == "pastprog" else "pres"
        neg = vform in ("pres", "past", "can") and self.chance(.06)
        return Clause(subj, vform, verb, self.vp_rest(verb, subj, refl_p), neg)

    def predicate(self, subj: NP) -> Phrase:
        if self.chance(.3):
            return Phrase().add(self.pick(LOCATIONS))
        p = Phrase()
        if self.chance(.12):
            p.add(self.pick(("very", "so", "too")))
        return p.add(self.pick(ADJS_BY_CLASS[subj.cls]).word)

    def vp_rest(self, verb: lx.Verb, subj: NP, refl_p: float) -> Phrase:
        rest = Phrase()
        if "r" in verb.flags and subj.cls in ("person", "animal") and self.chance(refl_p):
            rest.add(verb.prep, self.reflexive(subj))
            if verb.base in ("see", "look") and self.chance(.5):
                rest.add("in the mirror")
            return rest
        if verb.obj and (not verb.comp or self.chance(.65)):
            rest.add(verb.prep, self.obj(verb.obj, subj))
            if "p" in verb.flags:
                rest.add(self.pick(LOCATIONS + ("away", "down")))
            elif "d" in verb.flags and self.chance(.3):
                rest.add("to", self.obj(("person", "animal"), subj))
        else:
            comp = self.pick(COMPLEMENTS[verb.comp])
            for w in comp.split():
                rest.add(self.slot(w))
        if self.chance(.1):
            rest.add(self.pick(lx.ADVERBS))
        elif subj.cls == "person" and self.chance(.03):
            rest.add("by", self.reflexive(subj))
        return rest

    def slot(self, w: str) -> Phrase | str:
        if w == "@place":
            return self.pick(NOUNS_BY_CLASS["place"]).sg
        if w == "@person":
            if self.chance(.6):
                return self.name()
            return self.noun_np(("person",), adj_p=0, dets=(("the", .5), ("my", .25), ("your", .25)))
        if w == "@adv":
            return self.pick(lx.ADVERBS)
        return w

    def declarative(self, c: Clause) -> Phrase:
        s, v = c.subj, c.verb
        sg3 = s.person == 3 and s.num == "sg"
        p = Phrase().add(s)
        if c.vform == "pres" and v is not None:
            if c.neg:
                self._finite(p, "doesn't" if sg3 else "don't", s).add(v.base)
            elif v.base != v.past:  # "read" / "hurt" would be past tense without the -s: no pair from it
                self._finite(p, v.s3 if sg3 else v.base, s, v.base if sg3 else v.s3)
            else:
                p.add(v.s3 if sg3 else v.base)
        elif c.vform == "past" and v is not None:
            if c.neg:
                p.add("didn't", v.base)
            else:
                bad = v.bad_pasts()
                p.marks.extend([Mark(IRR, len(p.words), bad)] if bad else [])
                p.add(v.past)
        elif c.vform in ("prog", "pastprog", "cop", "pastcop"):
            self._finite(p, self.be(s, c.vform.startswith("past")), s)
            if v is not None:
                p.add(v.ing)
        elif c.vform == "perf" and v is not None:
            self._finite(p, "has" if sg3 else "have", s).add(v.part)
        elif v is not None:  # can / will
            p.add(("can't" if c.neg else "can") if c.vform == "can" else "will", v.base)
        return p.add(c.rest)

    def question(self, c: Clause) -> Phrase:
        """Yes/no question with the auxiliary fronted ("do"-support for simple tenses)."""
        s, v = c.subj, c.verb
        sg3 = s.person == 3 and s.num == "sg"
        vf = c.vform
        if vf in ("prog", "pastprog", "cop", "pastcop"):
            aux = self.be(s, vf.startswith("past"))
        else:
            aux = {"pres": "does" if sg3 else "do", "past": "did", "perf": "has" if sg3 else "have",
                   "can": "can", "will": "will"}[vf]
        p = self._finite(Phrase(), aux, s).add(s)
        if v is not None:
            p.add(v.ing if vf in ("prog", "pastprog") else v.part if vf == "perf" else v.base)
        p.add(c.rest)
        if s.rc_aux >= 0 and s.words[s.rc_aux] == aux:  # "is the boy who is happy running ?"
            p.marks.append(Mark(AUX, 1 + s.rc_aux, (), 2 + s.rc_aux))  # -> "is the boy who happy is running ?"
        else:  # "is the dog running home ?" -> "the dog running home is ?"
            p.marks.append(Mark(AUX, 0, (), len(p.words) - 1))
        return p

    def _finite(self, p: Phrase, word: str, subj: NP, alt: str = "") -> Phrase:
        alt = alt or lx.AUX_SWAP.get(word, "")
        if subj.agree and subj.person == 3 and alt and word != "am":
            p.marks.append(Mark(SVA, len(p.words), (alt,)))
        return p.add(word)
