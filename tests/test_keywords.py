from orchestrator.keywords import sparse_vector, tokenize


def test_tokenize_lowercases_and_drops_single_chars() -> None:
    assert tokenize("BREAKING News: a flood in València!") == ["breaking", "news", "flood", "in", "valència"]


def test_sparse_vector_is_stable_and_weights_repeats() -> None:
    a = sparse_vector("flood flood valencia")
    b = sparse_vector("Valencia FLOOD flood")
    assert a == b
    assert len(a.indices) == 2 and a.indices == sorted(a.indices)
    weights = dict(zip(a.indices, a.values, strict=True))
    flood = sparse_vector("flood").indices[0]
    valencia = sparse_vector("valencia").indices[0]
    assert weights[flood] > weights[valencia] == 1.0
    assert all(0 <= i < 2**31 for i in a.indices)


def test_empty_text_gives_empty_vector() -> None:
    assert sparse_vector("  . ! ").indices == []
