"""The version of the training math: part of every store key, so that stored runs are never stale."""

# bump when the training math or the record fields change: stored runs of older versions are never served
TRAINING_VERSION = "4"  # 4: problem types' metrics in the records (precision, recall, top-3, MAE)
