from __future__ import annotations

from embtune.data import duplicate_free_batches


def test_batches_have_no_shared_text_and_cover_everything():
    # many repeats of a few sentences: the naive split would put duplicates together
    examples = [(f"s{i % 7}",) for i in range(40)] + [(f"u{i}",) for i in range(60)]
    batches = duplicate_free_batches(examples, batch_size=8, seed=1)
    for b in batches:
        texts = [examples[i][0] for i in b]
        assert len(texts) == len(set(texts)), texts
        assert 2 <= len(b) <= 8
    flat = sorted(i for b in batches for i in b)
    dropped = 100 - len(flat)
    assert len(set(flat)) == len(flat)
    assert dropped <= 1  # at most one example left alone at the end


def test_cross_column_conflicts_are_separated():
    # example 1's hard negative is example 0's positive: a false negative if batched together
    examples = [("a", "b", "c"), ("d", "e", "b"), ("f", "g", "h"), ("i", "j", "k")]
    for seed in range(20):
        for batch in duplicate_free_batches(examples, batch_size=4, seed=seed):
            assert not {0, 1} <= set(batch)


def test_seeded_and_epoch_dependent():
    ex = [(str(i),) for i in range(50)]
    assert duplicate_free_batches(ex, 8, seed=3) == duplicate_free_batches(ex, 8, seed=3)
    assert duplicate_free_batches(ex, 8, seed=3) != duplicate_free_batches(ex, 8, seed=3, epoch=1)
    assert duplicate_free_batches(ex, 8, seed=3) != duplicate_free_batches(ex, 8, seed=4)
