"""A dataset from a pandas DataFrame, a model trained, evaluated and asked for recommendations."""
import numpy as np
import pandas as pd

import mmssl

rng = np.random.default_rng(0)
users = rng.integers(0, 100, size=3000)
items = (users % 5) * 8 + rng.integers(0, 8, size=3000)  # each user likes one block of 8 items
interactions = pd.DataFrame({"user_id": users, "item_id": items})
text = rng.standard_normal((40, 16)).astype("float32")  # a row per item id, in ascending order

dataset = mmssl.Dataset.from_frame(interactions, features={"text": text}, split="random:8:1:1")
model = mmssl.fit("vbpr", dataset, epochs=10, lr=0.01, progress=False)
print(model.evaluate(split="test", protocol="standard")["recall@20"])
for rec in model.recommend([0, 1], k=5):
    print(rec.user, rec.items)
