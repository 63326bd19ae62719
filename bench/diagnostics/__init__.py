"""One-off diagnostics behind notes in docs/ (not tables a user reproduces), one entry point:

python -m bench.diagnostics NAME [options]      (python -m bench.diagnostics lists them)
"""

TOOLS = {
    "curves": "valid metric per epoch of several runs' logs, side by side",
    "faiss_blas": "faiss's BLAS switch point, timed both ways",
    "mining_time": "pattern mining time on a dataset and a synthetic set",
    "personaliser_weights": "DR4SR+'s learned row weights read back from a checkpoint",
    "regen_plausibility": "each regenerated item's rank under a model of the original data",
    "regenerator_views": "how a regenerator uses DR4SR's diversity promoter",
    "search_bounds": "what exact pruning of a memory bank search would leave",
    "sracl_padding": "SRA-CL: items whose substitutes would include padding, raw vector lengths",
}
