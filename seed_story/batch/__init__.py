"""Batch story generation into a store: manifests in, stored story sequences and storybooks out.

Plain library code (no Prefect): ``flows/`` and ``tasks/`` compose these functions into the nightly flow, and a
notebook can call them directly.
"""
