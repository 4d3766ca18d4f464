"""OPT's special token ids and vocabulary size (fairseq's dictionary order), written once.

    <s> = 0 (unused)   <pad> = PAD_ID = 1   </s> = EOS_ID = 2 (also BOS_ID)   <unk> = UNK_ID = 3

A document is `[BOS 2] + prompt ids + target ids + [EOS 2]`; padding is 1. BPE token i of
fairseq's `dict.txt` has id NUM_SPECIAL + i; there are VOCAB_SIZE = 50272 ids (padded to a
multiple of 8). TF-free and import-free: the model, the pipeline and evaluation all read these.
"""

PAD_ID = 1
BOS_ID = 2
EOS_ID = 2
UNK_ID = 3
NUM_SPECIAL = 4
VOCAB_SIZE = 50272
NAMES = {0: "<s>", PAD_ID: "<pad>", EOS_ID: "</s>", UNK_ID: "<unk>"}
