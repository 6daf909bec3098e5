"""Identifying known music: excerpts of a piece under a deformation (another timbre,
synthesiser, key or tempo) matched against every piece's reference recording.

``queries`` cuts the excerpts, ``reference`` pools sliding windows from the time summaries of
whole-piece embeddings, ``alignment`` is the key-invariant subsequence alignment of chroma,
``matching`` ranks the pieces for every query and ``scores`` turns the ranks into top-k, MRR
and localisation with intervals over pieces.
"""
