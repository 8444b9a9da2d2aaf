"""What to run and where: config -> trial configurations -> Ray Tune (grid, Optuna, confirm).

Run it with `python -m sweep --config sweep/configs/default.yaml` (or `make sweep`).
"""
