"""Slot preference: a queued run that asks for a slot (or a GPU) is claimed only by it."""

from __future__ import annotations

import pytest

from mfm.runner.launch import SLOT_NAME, SlotWishError, check_slot_wish, default_slot_names
from mfm.store import Database, queue, repo

CFG = {"method": {"name": "ce"}}


def test_claim_respects_the_wish(tmp_path):
    with Database(str(tmp_path / "e.db")) as db:
        a = queue.enqueue_run(db, config=CFG, epochs_total=1, want_slot="gpu1")
        b = queue.enqueue_run(db, config=CFG, epochs_total=1)
        c = queue.enqueue_run(db, config=CFG, epochs_total=1, want_slot="gpu1.1")
        # gpu0 skips the older run that wants gpu1 and takes the next one
        assert queue.claim_next(db, host="h", slot="gpu0").id == b
        assert queue.claim_next(db, host="h", slot="gpu0") is None
        # a slot on GPU 1 takes a run that asks for the GPU as a whole
        assert queue.claim_next(db, host="h", slot="gpu1.0").id == a
        assert queue.claim_next(db, host="h", slot="gpu1.0") is None
        got = queue.claim_next(db, host="h", slot="gpu1.1")
        assert got.id == c and got.slot == "gpu1.1" and got.want_slot == "gpu1.1"
        assert repo.get_run(db, c).status == "starting"


@pytest.mark.parametrize("wish, slots, want", [
    ("", ["cpu0"], ""), ("any", ["gpu0"], ""), (" gpu1 ", ["gpu0", "gpu1"], "gpu1"),
    ("gpu1", ["gpu1.0", "gpu1.1"], "gpu1"), ("gpu1.1", ["gpu1.0", "gpu1.1"], "gpu1.1"),
])
def test_wish_accepted(wish, slots, want):
    assert check_slot_wish(wish, slots) == want


@pytest.mark.parametrize("wish, slots, words", [
    ("gpu3", ["gpu0", "gpu1"], "no slot gpu3 on this host (slots: gpu0, gpu1)"),
    ("fast", ["cpu0"], "slot: must be 'any' or a slot name"),
    ("cpu7", None, "no slot cpu7 on this host (slots: "),  # the default supervisor's slots
])
def test_wish_refused_names_the_slots(wish, slots, words):
    with pytest.raises(SlotWishError, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_slot_wish(wish, slots)


def test_default_slots_are_slot_names():
    names = default_slot_names()
    assert names and all(SLOT_NAME.match(n) for n in names)
