"""Minimal pairs in the BLiMP jsonl format, made from held-out sentences of the sample grammar.

Each good sentence is a grammatical sentence of the same grammar as the training text, but a *reserved* one (see
`texts.reserved`), which the corpus generator never emits. The bad sentence applies one `Mark` of the targeted
phenomenon, so the two sentences have the same number of words and differ in exactly one place:

- subject_verb_agreement: one finite verb/auxiliary: is/are, was/were, has/have, does/do, runs/run (also across
  adjectives, prepositional phrases, relative clauses, and on fronted auxiliaries).
- determiner_noun_agreement: one determiner: this/these, that/those, a(n)/many.
- anaphor_agreement: one reflexive: himself/herself (gender), themselves/himself/herself (number).
- irregular_past_tense: one past form: went/goed (over-regularised) or ate/eaten (participle for past).
- aux_inversion_questions: the position of one auxiliary: "Is the dog running home?" / "The dog running home is?",
  and "Is the boy who is happy running?" / "Is the boy who happy is running?".
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from bl2.data.sample import lexicon as lx
from bl2.data.sample.grammar import ANA, AUX, DNA, IRR, IRREGULAR_BY_SUBJ, NP, REFL_BY_SUBJ, SVA, Mark
from bl2.data.sample.texts import Sentence, Speaker, canonical, reserved

PHENOMENA: tuple[str, ...] = (SVA, DNA, ANA, IRR, AUX)
# phenomenon -> (BLiMP "field", BLiMP "linguistics_term")
INFO: dict[str, tuple[str, str]] = {
    SVA: ("morphology", "subject_verb_agreement"),
    DNA: ("morphology", "determiner_noun_agreement"),
    ANA: ("morphology", "anaphor_agreement"),
    IRR: ("morphology", "irregular_forms"),
    AUX: ("syntax", "question_formation"),
}
SUITE = "blimp_filtered"  # the folder `bl2 eval blimp --data-dir` reads
# a file beside the jsonl files: `eval blimp` records that the suite is synthetic and `bl2 report` labels it so
SYNTHETIC_MARK = "SYNTHETIC.md"
DNA_DETS = (("this", 1.), ("that", 1.), ("these", 1.), ("those", 1.), ("a", .7), ("many", .4))
MAX_TRIES_PER_PAIR = 3000


def apply_mark(words: list[str], mark: Mark, alt: str = "") -> list[str]:
    """The bad sentence's words: words[index] replaced by `alt`, or moved to position move_to."""
    out = list(words)
    if mark.move_to >= 0:
        out.insert(mark.move_to, out.pop(mark.index))
    else:
        out[mark.index] = alt
    return out


class PairMaker(Speaker):
    """Candidate sentences rich in one phenomenon (the same grammar, other template weights)."""

    def agreeing_subject(self, *, pp_p: float = .4, rc_p: float = .15) -> NP:
        kind = self.weighted((("np", .75), ("name", .1), ("pron", .15)))
        if kind == "name":
            return self.name()
        if kind == "pron":
            return self.pronoun(self.pick(("he", "she", "it", "they")))
        return self.noun_np(("person", "animal"), agreeing=True, pp_p=pp_p, rc_p=rc_p)

    def candidate(self, phen: str) -> Sentence:
        question = False
        if phen == SVA:
            c = self.clause(self.agreeing_subject(), self.pick(("pres", "prog", "pastprog", "perf", "cop", "pastcop")))
            question = self.chance(.35)
        elif phen == DNA:
            subj = self.noun_np(("person", "animal"), agreeing=True, dets=DNA_DETS, adj_p=.35) if self.chance(.5) \
                else self.subject(pp_p=0, rc_p=0)
            c = self.clause(subj)
            question = self.chance(.3)
        elif phen == ANA:
            kind = self.weighted((("sg", .4), ("name", .2), ("pron", .15), ("pl", .25)))
            subj = (self.noun_np(("person",), num="sg", gendered=True, pp_p=.25) if kind == "sg" else
                    self.name() if kind == "name" else
                    self.pronoun(self.pick(("he", "she", "they")), "person") if kind == "pron" else
                    self.noun_np(("person",), num="pl", agreeing=True, pp_p=.25))
            vform = self.pick(("past", "past", "pres", "prog", "pastprog", "will", "can"))
            c = self.clause(subj, vform, verb=self.pick(REFL_BY_SUBJ["person"]), refl_p=1.)
            question = self.chance(.2)
        elif phen == IRR:
            subj = self.subject()
            c = self.clause(subj, "past", verb=self.pick(IRREGULAR_BY_SUBJ[subj.cls]))
        else:
            if self.chance(.5):
                past = self.chance(.3)
                subj = self.noun_np(("person", "animal"), pp_p=0, rc_p=1., rc_past=past)
                c = self.clause(subj, self.pick(("pastprog", "pastcop") if past else ("prog", "cop")))
            else:
                c = self.clause(self.subject(pp_p=.2, rc_p=0))
            question = True
        return (self.question(c), "?") if question else (self.declarative(c), ".")

    def pairs(self, phen: str, n: int, exclude: set[str]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for _ in range(n * MAX_TRIES_PER_PAIR):
            if len(out) == n:
                return out
            p, end = self.candidate(phen)
            marks = [m for m in p.marks if m.phen == phen and (m.alts or m.move_to >= 0)]
            good = canonical(p.words, end)
            if not marks or good in seen or good in exclude or not reserved(good):
                continue
            mark = self.pick(marks)
            bad = canonical(apply_mark(p.words, mark, self.pick(mark.alts) if mark.alts else ""), end)
            if bad == good or bad in exclude:
                continue
            seen.add(good)
            out.append((good, bad))
        if len(out) < n:
            raise RuntimeError(f"could only make {len(out)} of {n} {phen} pairs")
        return out


def pair_records(phen: str, pairs: list[tuple[str, str]]) -> list[dict]:
    field, term = INFO[phen]
    return [{"sentence_good": good, "sentence_bad": bad, "field": field, "linguistics_term": term, "UID": phen,
             "simple_LM_method": True, "one_prefix_method": False, "two_prefix_method": False,
             "lexically_identical": phen == AUX, "pair_id": i, "pairID": str(i)}
            for i, (good, bad) in enumerate(pairs)]


def write_pairs(out_dir: Path, *, n_pairs: int, seed: int, exclude: set[str]) -> Path:
    """out_dir/blimp_filtered/<phenomenon>.jsonl for every phenomenon; returns out_dir."""
    out_dir = Path(out_dir)
    suite = out_dir / SUITE
    suite.mkdir(parents=True, exist_ok=True)
    for phen in PHENOMENA:
        maker = PairMaker(random.Random(f"bl2-sample-pairs:{seed}:{phen}"))
        records = pair_records(phen, maker.pairs(phen, n_pairs, exclude))
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (suite / f"{phen}.jsonl").write_text(text, encoding="utf-8", newline="\n")
    (suite / SYNTHETIC_MARK).write_text("bl2's built-in synthetic minimal pairs in BLiMP's file layout, generated "
                                        "from the sample grammar: not BLiMP.\n", encoding="utf-8")
    return out_dir


def expected_alternations() -> dict[str, set[tuple[str, str]]]:
    """(good word, bad word) alternations allowed per substitution phenomenon (used by the tests)."""
    sva = set(lx.AUX_SWAP.items()) | {(v.s3, v.base) for v in lx.VERBS} | {(v.base, v.s3) for v in lx.VERBS}
    dna = set(lx.DET_SWAP.items()) | {("many", "an")}
    ana = {(a, b) for a in ("himself", "herself", "themselves") for b in ("himself", "herself") if a != b}
    irr = {(v.past, bad) for v in lx.VERBS for bad in v.bad_pasts()}
    return {SVA: sva, DNA: dna, ANA: ana, IRR: irr}
