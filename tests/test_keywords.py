from orchestrator.keywords import (
    ANALYZER,
    LEGACY_ANALYZER,
    document_terms,
    filename_words,
    keyword_query,
    legacy_sparse_vector,
    query_terms,
    query_vector,
    sparse_vector,
)


def test_english_is_folded_stemmed_and_stopwords_go() -> None:
    assert document_terms("The FLOODS were flooding Valencia's streets!") == [
        "flood",
        "flood",
        "valencia",
        "street",
    ]


def test_spanish_text_is_stemmed_as_spanish_and_accents_fold() -> None:
    # Spanish stopwords ("las", "de", "los") decide the language; "canción"/"canciones" meet;
    # "niños" -> "nin".
    assert document_terms("Las canciones de los niños") == ["cancion", "nin"]
    assert query_terms("canción") >= {"cancion"}


def test_a_query_is_stemmed_both_ways_so_either_language_meets_it() -> None:
    english_doc, spanish_doc = (
        set(document_terms("running dogs")),
        set(document_terms("los perros corriendo")),
    )
    assert english_doc <= query_terms("dogs running")
    assert spanish_doc <= query_terms("perros corriendo")


def test_numbers_are_kept_and_number_words_become_digits() -> None:
    assert document_terms("seventeen seagulls in 2024, 007") == ["17", "seagul", "2024", "7"]
    assert "17" in query_terms("diecisiete")


def test_file_names_give_words() -> None:
    assert filename_words(["/a/Evening_News-2024.mp4", "/b/Evening_News-2024.mkv"]) == "Evening News 2024"


def test_bm25_weights_saturate_and_normalise_by_length() -> None:
    one = sparse_vector("flood")
    two = sparse_vector("flood flood")
    long = sparse_vector("flood " + " ".join(f"word{i}" for i in range(200)))
    assert one.indices == two.indices == sorted(one.indices)
    assert one.values[0] < two.values[0] < 2 * one.values[0]  # more is more, but less than twice
    flood = one.indices[0]
    assert dict(zip(long.indices, long.values, strict=True))[flood] < one.values[0]  # a long text weighs less
    assert all(0 <= i < 2**31 for i in long.indices)
    assert sparse_vector("  . ! ").indices == []


def test_query_vector_weighs_each_term_once() -> None:
    vec = query_vector("flood flood valencia")
    # "valencia" is two terms (English "valencia", Spanish "valenci"); "flood" one, however often asked.
    assert len(vec.indices) == len(query_terms("flood valencia")) == 3 and vec.values == [1.0] * 3


def test_collections_from_before_the_analysis_are_queried_the_old_way() -> None:
    assert keyword_query("Floods", LEGACY_ANALYZER) == legacy_sparse_vector("Floods")
    assert keyword_query("Floods", ANALYZER) == query_vector("Floods")
    assert keyword_query("Floods", ANALYZER) != legacy_sparse_vector("Floods")
