"""Benchmarks and result tables, run from the repository root as modules: ``python -m bench.<name>``
(accuracy, full_table, raft_study, sensitivity, curves, speed, epoch_time, scale, mining_time,
regen_table, gpu_smoke). Each writes its Markdown and CSV under results/ (or --out_dir)."""
