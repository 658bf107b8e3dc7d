"""Batches for evaluation: many programs, each alone or against tests, results streamed as they complete.

``items`` (what to run), ``compare`` (how stdout is judged), ``verdicts`` (what comes back),
``execute`` (one item), ``runner`` (bounded streaming, ``AsyncPool.map``),
``many`` (``corral.arun_many``). See docs/batch.md.
"""
