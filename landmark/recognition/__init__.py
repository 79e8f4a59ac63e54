"""Recognition: how a trained variant's embeddings answer "which landmark, if any, and how sure?".

search.py     whitening and the faiss indexes (index stage)
gallery.py    what a query is answered from (the train images, the dev images, the non-landmark pool) and what
              a query set finds there
method.py     a method parsed once from its name: a base casts the ballot, steps change it, the count ranks
ballot.py     a ballot (each query's votes) and its count into a ranking
steps.py      the steps, each a small class registered by name, with its options in params.yaml's recognize.steps
verification.py  SIFT features and homography inliers (local_features stage, verify step)
sets.py       the recognize stage's validation and test query sets, and every method's answers to them
scoring.py    validation, dev and test figures of each method
"""
