"""Reports: a study's Parquet results into Plotly charts, an offline HTML report and the
leaderboard.

Reads results through ``harness.store`` (tables, the study lock's record) and nothing else
of the harness; never torch, Ray or the methods (pyproject.toml's import contracts).
"""
