"""The file names of a model dir that more than one module spells, kept free of torch so that the
command line's defaults use them: `models/model_<epoch>.pt` (everything a resume needs, written by
`trkd.checkpoint`) and `models/avg_model.pt`, the averaged weights every reader takes by default."""

AVG_NAME = "avg_model.pt"
