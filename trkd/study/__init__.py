"""Study instruments: what a researcher measures about training runs rather than what a recipe
needs to train and score. Per-epoch EER and the plateau tests (`trkd score-epochs`,
`trkd regime`), the size of TRKD's confusion set over a teacher dump (`trkd confusion-sizes`),
and the shape of an embedding set (`trkd embedding-stats`)."""
