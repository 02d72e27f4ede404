"""Where studies live: folders or object storage by URI with a local mirror
(``location``), the one-writer study lock (``lock``), Parquet tables written as parts and
merged (``tables``), and each seed's Optuna journal (``journal``).

Light on purpose (pyarrow, pandas, Optuna): ``reports`` reads results through it. May
import ``errors`` only; never torch or Ray.
"""
