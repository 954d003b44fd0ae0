"""Whole utterances and texts of the sample corpus: child-directed speech, simple stories, two-speaker dialogue.

Formatting. A sentence's *canonical* form is BLiMP's: first letter capitalised, words separated by single spaces,
final punctuation attached ("Is the dog running?"). `childes` lines are written CHILDES-style with spaced
punctuation ("Is the dog running ?"), which `bl2 prepare`'s childes cleaning turns into the canonical form; the
other sources are written in canonical form directly (stories: several sentences per line; dialogue:
"A:<TAB>..." turns). So the minimal pairs, written canonically, look exactly like training text after cleaning.

Held-out sentences. A sentence of four or more words whose keyed hash falls in 1/16 of the hash space is
*reserved*: the corpus generator never emits it (nor any utterance built around it, e.g. with a vocative), and
the minimal pairs use only reserved sentences. So, whatever the seed and size, no pair sentence can occur in any
train or dev text of this generator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from bl2.data.sample import lexicon as lx
from bl2.data.sample.grammar import LOCATIONS, NOUNS_BY_CLASS, NP, Clause, Grammar, Phrase

Sentence = tuple[Phrase, str]  # words + final punctuation
RESERVE_MOD = 16

FIXED = ("yes .", "no .", "okay .", "good job !", "uh oh !", "oh no !", "thank you .", "all done !", "wow !",
         "look !", "here you go .", "night night .", "bye bye !", "that's right .", "very good !", "come here !",
         "be careful !", "sit down .", "no no no .", "all gone !", "you did it !", "what is that ?", "your turn .",
         "my turn .", "let's see .", "what happened ?", "where is it ?", "I see .", "oh , I see .")
NEG = {"did": "didn't", "does": "doesn't", "do": "don't", "is": "isn't", "are": "aren't", "am": "am not",
       "was": "wasn't", "were": "weren't", "has": "hasn't", "have": "haven't", "can": "can't", "will": "won't"}
SWAP_PERSON = {"your": "my", "my": "your", "yourself": "myself", "myself": "yourself", "me": "you", "you": "me"}


def canonical(words: list[str], end: str) -> str:
    text = " ".join(words).replace(" ,", ",")
    return text[:1].upper() + text[1:] + end


def spaced(words: list[str], end: str) -> str:
    text = " ".join(words)
    return text[:1].upper() + text[1:] + " " + end


def reserved(sentence: str) -> bool:
    """True for the held-out sentences (canonical form) from which minimal pairs are made."""
    if sentence.count(" ") < 3:
        return False
    digest = hashlib.blake2b(sentence.encode("utf-8"), digest_size=8, person=b"bl2-pair").digest()
    return digest[0] % RESERVE_MOD == 0


def fixed(text: str) -> Sentence:
    *words, end = text.split()
    return Phrase(words), end


class Speaker(Grammar):
    """Generates utterances; never one that is reserved."""

    def free(self, make: Callable[[], Sentence]) -> Sentence:
        """`make()` until its sentence is not reserved."""
        while True:
            p, end = make()
            if not reserved(canonical(p.words, end)):
                return p, end

    # ---- child-directed speech ----------------------------------------------------------------------------------

    def utterance(self) -> Sentence:
        kind = self.weighted((("decl", .3), ("yn", .17), ("wh", .1), ("imp", .15), ("dem", .09), ("fixed", .11),
                              ("voc", .08)))
        if kind == "voc":
            p, end = self.free(self.core_utterance)
            name = self.name().words[0]
            if end == "?" or self.chance(.5):
                return Phrase(p.words + [",", name]), end
            return Phrase([name, ","] + p.words), end
        if kind == "fixed":
            return fixed(self.pick(FIXED))
        return self.free(lambda: self.core_utterance(kind))

    def core_utterance(self, kind: str = "") -> Sentence:
        kind = kind or self.weighted((("decl", .4), ("yn", .25), ("wh", .12), ("imp", .15), ("dem", .08)))
        if kind == "decl":
            return self.declarative(self.clause()), self.pick((".", ".", ".", "!"))
        if kind == "yn":
            return self.question(self.clause()), "?"
        if kind == "wh":
            return self.wh_question(), "?"
        if kind == "imp":
            return self.imperative()
        return self.demonstrative(), "."

    def wh_question(self) -> Phrase:
        kind = self.weighted((("what_ing", .25), ("where_is", .2), ("where_go", .1), ("who", .15), ("color", .1),
                              ("what_do", .2)))
        if kind in ("where_is", "color", "where_go"):
            s = self.noun_np(("toy", "thing", "clothes", "animal", "food"), adj_p=.2) \
                if kind == "color" or self.chance(.8) else self.name()
            if kind == "where_go":
                return Phrase(["where", "did"]).add(s, "go")
            p = Phrase(["where"] if kind == "where_is" else ["what", "color"])
            return self._finite(p, self.be(s, False), s).add(s)
        if kind == "who":
            who = NP(["who"], [], agree=False)
            return self.declarative(self.clause(who, "past", refl_p=0))
        subj = self.subject(pp_p=0, rc_p=0)
        verbs = [v for v in lx.VERBS if v.obj and subj.cls in v.subj and not v.prep and "p" not in v.flags]
        v = self.pick(verbs)
        p = Phrase(["what"])
        if kind == "what_ing" and "s" not in v.flags:
            self._finite(p, self.be(subj, False), subj).add(subj, v.ing)
        else:
            aux = self.pick(("did", "do")) if subj.person < 3 else self.pick(("did", "does"))
            aux = "do" if aux == "does" and subj.num == "pl" else aux
            self._finite(p, aux, subj).add(subj, v.base)
        return p

    def imperative(self) -> Sentence:
        you = self.pronoun("you")
        kind = self.weighted((("look", .25), ("do", .45), ("dont", .1), ("lets", .2)))
        end = "!" if self.chance(.4) else "."
        if kind == "look":
            classes = ("animal", "toy", "thing", "nature", "bit", "person", "food")
            return Phrase(["look", "at"]).add(self.noun_np(classes, adj_p=.5, pp_p=.1)), end
        doer = self.pronoun("we") if kind == "lets" else you
        verbs = [v for v in lx.VERBS if "person" in v.subj and (v.obj or kind == "lets")]
        v = self.pick(verbs)
        p = Phrase(["let's"] if kind == "lets" else ["don't"] if kind == "dont" else [])
        if v.base == "give" and self.chance(.6):
            return p.add("give me", self.noun_np(("toy", "food", "thing"), num="", adj_p=.3)), end
        return p.add(v.base, self.vp_rest(v, doer, refl_p=.05)), end

    def demonstrative(self) -> Phrase:
        """"that is a duck", "these are your shoes", "there are two dogs in the garden"."""
        noun = self.pick(NOUNS_BY_CLASS[self.pick(("animal", "toy", "food", "clothes", "thing", "nature", "bit"))])
        pl = not noun.mass and self.chance(.4)
        head = noun.pl if pl else noun.sg
        art = "" if noun.mass else ("an" if head[0] in "aeiou" else "a")
        if self.chance(.35):
            det = self.pick(("some", "two", "three", "many")) if pl else (art or "some")
            return Phrase(["there", "are" if pl else "is", det, head]).add(self.pick(LOCATIONS))
        subj = self.pick(("these", "those")) if pl else self.pick(("this", "that", "it"))
        det = self.pick(("", "my", "your", "the")) if pl else self.pick((art or "the", "my", "your", "the"))
        return Phrase([subj, "are" if pl else "is"] + ([det] if det else []) + [head])

    # ---- stories and dialogue -----------------------------------------------------------------------------------

    def story(self) -> list[Sentence]:
        """A short past-tense story about one character, referred to by name, noun or pronoun."""
        gender = self.pick(("m", "f"))
        pron = "he" if gender == "m" else "she"
        if self.chance(.5):
            name = self.pick([n.word for n in lx.NAMES if n.gender == gender and n.word[0] != "G"])
            kid = "boy" if gender == "m" else "girl"
            intro = Phrase(["there", "was", "a", self.pick(("little", "small")), kid, "named", name])
            if reserved(canonical(intro.words, ".")):
                intro = Phrase(["there", "was", "a", kid, "named", name])
            refs: list[Callable[[], NP]] = [lambda: NP([name], [], gender=gender, pron=pron)]
            cls = "person"
        else:
            noun = self.pick([n for n in NOUNS_BY_CLASS["animal"] if not n.invariant])
            adj = self.pick(("little", "big", "small", "happy", "brown", "white", "silly"))
            art = "an" if adj[0] in "aeiou" else "a"
            intro = Phrase(["once", "upon", "a", "time", "there", "was", art, adj, noun.sg])
            if reserved(canonical(intro.words, ".")):
                intro = Phrase(["there", "was", art, adj, noun.sg])
            refs = [lambda: NP(["the", noun.sg], [], gender=gender, cls="animal", pron=pron)]
            cls = "animal"
        refs.append(lambda: self.pronoun(pron, cls))
        out = [(intro, ".")]
        for i in range(self.r.randint(4, 8)):
            if self.chance(.25):  # someone else
                out.append(self.free(lambda: (self.declarative(self.clause(self.third_person(), past=True)), ".")))
                continue
            subj = refs[0]() if i == 0 or self.chance(.3) else refs[1]()
            p, end = self.free(lambda: (self.declarative(self.clause(subj, past=True, refl_p=.25)), "."))
            if self.chance(.25):
                p = Phrase().add(self.pick(("then", "one day ,", "later ,", "after that ,")), p)
            out.append((p, end))
        end = fixed(self.pick(("the end .", f"then {pron} went home .", f"{pron} was very happy .")))
        if self.chance(.4) and not reserved(canonical(end[0].words, end[1])):
            out.append(end)
        return out

    def third_person(self) -> NP:
        return self.noun_np(("person", "animal"), pp_p=.15) if self.chance(.7) else self.name()

    def dialogue(self) -> list[tuple[str, list[Sentence]]]:
        """One or two exchanges: A asks a yes/no question, B answers (short answer and maybe a full sentence)."""
        turns: list[tuple[str, list[Sentence]]] = []
        for _ in range(self.r.randint(1, 2)):
            while True:
                c = self.clause(self.pronoun("you") if self.chance(.5) else None)
                q = self.question(c)
                if not reserved(canonical(q.words, "?")):
                    break
            turns.append(("A", [(q, "?")]))
            turns.append(("B", self.answer(c)))
            if self.chance(.4):
                turns.append(("A", [fixed(self.pick(("okay .", "oh , that is nice .", "really ?", "good .",
                                                     "me too .", "I see .", "oh no !")))]))
        return turns

    def answer(self, c: Clause) -> list[Sentence]:
        """"Yes, I did." / "No, it isn't." and, after a yes, maybe the full sentence ("I saw the ducks.")."""
        first = c.subj.words[0]
        swap = first in ("I", "you")  # the answerer's point of view: I <-> you, my <-> your
        subj = self.pronoun("you" if first == "I" else "I") if swap else self.pronoun(c.subj.pron or "it", c.subj.cls)
        vf = c.vform
        sg3 = subj.person == 3 and subj.num == "sg"
        if vf in ("prog", "pastprog", "cop", "pastcop"):
            aux = self.be(subj, vf.startswith("past"))
        else:
            aux = {"pres": "does" if sg3 else "do", "past": "did", "perf": "has" if sg3 else "have", "can": "can",
                   "will": "will"}[vf]
        yes = self.chance(.6)
        short = Phrase(["yes" if yes else "no", ","]).add(subj)
        if yes:
            self._finite(short, aux, subj)
        else:
            short.add(NEG[aux])
        out = [(short, ".")]
        if yes and self.chance(.6) and (swap or not set(c.rest.words) & set(lx.REFLEXIVES)):
            rest = Phrase([SWAP_PERSON.get(w, w) for w in c.rest.words]) if swap else c.rest
            full = self.declarative(Clause(subj, vf, c.verb, rest))
            out.append((full, "."))
        return out
