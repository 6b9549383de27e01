"""TRKD's private fast path: the partition and the class-set sums behind `trkd.py`'s terms.

`trkd.py` states TRKD as the paper writes it (`reference_partition`, `reference_terms`: a plain
sort-and-cumsum and masked softmaxes); training runs these modules instead, pinned equal to the
reference by tests/test_trkd_fast.py and tests/test_loss_values.py:

- `partition.py`: F(τ) without sorting the class axis (a histogram of the masses finds the
  bucket where the running mass crosses τ; only that bucket is ranked): 2.5–6.4× faster than a
  plain sort-and-cumsum (bench/losses.py), and more exact in float32 (running mass in float64).
- `sums.py`: each set's Σ exp(z − m) and cross term, by gathers or dot products with F's mask.
- `sets.py`: `LogitStats`, the sets y, nt, F, B of one call and their log-sum-exps and KLs,
  each computed once when a term first asks for it.
"""
