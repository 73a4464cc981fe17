"""mmssl serve over real HTTP: a server process on 127.0.0.1 and httpx, every endpoint, every
bad input a 4xx with a message, new items recommended to the users whose taste they match."""

from __future__ import annotations

import numpy as np
import pytest

from mmssl.data.dataset import load_dataset

from .conftest import N_CLUSTERS, user_clusters

httpx = pytest.importorskip("httpx", reason="the serve extra is not installed: pip install 'mmssl[serve]'")


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def data(planted_dir):
    return load_dataset(planted_dir)


def test_health_reports_the_index_and_cold_start(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["index"] == "exact" and body["cold_start"] == "content"
    assert body["users"] == 80 and body["items"] >= 60 and body["model"] == "vbpr"
    assert "title" in body["metadata_columns"]


def test_recommend_gives_items_with_scores_and_titles_and_leaves_out_seen(client, data):
    r = client.get("/recommend", params={"user": "u0", "k": 7})
    assert r.status_code == 200
    items = r.json()["items"]
    assert len(items) == 7 and all("score" in i and i["title"].startswith("Film ") for i in items)
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    seen = set(data.item_ids[data.matrix("train")[0].indices])
    assert not seen & {i["id"] for i in items}
    keep = client.get("/recommend", params={"user": "u0", "k": 60, "exclude_seen": "false"}).json()
    assert seen <= {i["id"] for i in keep["items"]}


def test_batch_recommend_matches_single_requests(client):
    r = client.post("/recommend", json={"users": ["u1", "u2"], "k": 5})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["user"] for x in results] == ["u1", "u2"]
    single = client.get("/recommend", params={"user": "u2", "k": 5}).json()
    assert [i["id"] for i in results[1]["items"]] == [i["id"] for i in single["items"]]


def test_similar_items_of_a_cluster_are_mostly_of_that_cluster(client):
    r = client.get("/items/i0/similar", params={"k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["item"]["id"] == "i0" and len(body["similar"]) == 5
    assert "i0" not in {i["id"] for i in body["similar"]}
    same = [int(i["id"][1:]) % N_CLUSTERS == 0 for i in body["similar"]]
    assert sum(same) >= 4
    assert client.get("/items/i3").json()["title"] == "Film 3 of cluster 3"


def test_users_list_and_history(client, data):
    assert client.get("/users", params={"limit": 3}).json()["users"] == ["u0", "u1", "u2"]
    hist = client.get("/users/u0/history").json()["items"]
    assert {i["id"] for i in hist} == set(data.item_ids[data.matrix("train")[0].indices])


def test_a_new_item_is_recommended_to_the_users_of_its_cluster(client, data):
    cluster = 2
    members = np.arange(data.n_items) % N_CLUSTERS == cluster
    features = {m: np.asarray(f)[members].mean(axis=0).tolist() for m, f in data.features.items()}
    r = client.post("/items", json={"id": "brand-new", "features": features,
                                    "metadata": {"title": "A new film of cluster 2"}})
    assert r.status_code == 201, r.text
    assert r.json() == {"id": "brand-new", "method": "content", "zero_modalities": []}
    clusters = user_clusters(data)
    hit = {}
    for c in range(N_CLUSTERS):
        users = [f"u{u}" for u in np.flatnonzero(clusters == c)]
        results = client.post("/recommend", json={"users": users, "k": 10}).json()["results"]
        hit[c] = np.mean([any(i["id"] == "brand-new" for i in x["items"]) for x in results])
    assert hit[cluster] >= 0.8, hit
    assert max(hit[c] for c in range(N_CLUSTERS) if c != cluster) <= 0.2, hit
    item = client.get("/items/brand-new").json()
    assert item == {"id": "brand-new", "new": True, "title": "A new film of cluster 2"}
    similar = client.get("/items/brand-new/similar", params={"k": 5}).json()["similar"]
    assert sum(int(i["id"][1:]) % N_CLUSTERS == cluster for i in similar) >= 4


def test_a_new_item_with_one_modality_gets_zeros_for_the_other(client, data):
    f = np.asarray(data.features["image"])[1].tolist()
    r = client.post("/items", json={"id": "image-only", "features": {"image": f}})
    assert r.status_code == 201 and r.json()["zero_modalities"] == ["text"]


def test_a_new_user_folded_in_from_one_cluster_gets_that_cluster(client, data):
    liked = [f"i{i}" for i in range(1, data.n_items, N_CLUSTERS)][:6]  # cluster 1
    r = client.post("/users", json={"id": "newbie", "items": liked})
    assert r.status_code == 201 and r.json() == {"id": "newbie", "items": 6}
    items = client.get("/recommend", params={"user": "newbie", "k": 10}).json()["items"]
    assert not set(liked) & {i["id"] for i in items}
    assert sum(int(i["id"][1:]) % N_CLUSTERS == 1 for i in items if i["id"][1:].isdigit()) >= 8
    assert {i["id"] for i in client.get("/users/newbie/history").json()["items"]} == set(liked)


BAD_GETS = [
    ("/recommend", {"user": "nobody"}, 404, "unknown user id 'nobody'"),
    ("/recommend", {"user": "u0", "k": 0}, 422, "k:"),
    ("/recommend", {"user": "u0", "k": -1}, 422, "k:"),
    ("/recommend", {"user": "u0", "k": 10**30}, 422, "k:"),
    ("/recommend", {"user": "u0", "k": "many"}, 422, "k:"),
    ("/recommend", {}, 422, "user:"),
    ("/recommend", {"user": "u0", "exclude_seen": "maybe"}, 422, "exclude_seen:"),
    ("/items/nothing/similar", {}, 404, "unknown item id 'nothing'"),
    ("/items/nothing", {}, 404, "unknown item id"),
    ("/items/i0/similar", {"k": 0}, 422, "k:"),
    ("/users/nobody/history", {}, 404, "unknown user id"),
]


@pytest.mark.parametrize("path,params,status,message", BAD_GETS)
def test_bad_queries_get_a_4xx_with_a_message(client, path, params, status, message):
    r = client.get(path, params=params)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def _features(data, **change):
    out = {m: np.asarray(f)[0].tolist() for m, f in data.features.items()}
    out.update(change)
    return out


def test_bad_bodies_get_a_4xx_with_a_message(client, data):
    cases = [
        (client.post("/recommend", content=b"{not json", headers={"content-type": "application/json"}),
         422, "malformed JSON"),
        (client.post("/recommend", json={"users": []}), 422, "users:"),
        (client.post("/recommend", json={"users": ["u0", "ghost"]}), 404, "ghost"),
        (client.post("/recommend", json={"users": ["u0"], "k": 0}), 422, "k:"),
        (client.post("/recommend", json={"users": ["u0"], "colour": 1}), 422, "colour"),
        (client.post("/items", content=b"[1, 2", headers={"content-type": "application/json"}),
         422, "malformed JSON"),
        (client.post("/items", json={"id": "x1", "features": _features(data, image=[1.0, 2.0])}),
         422, "features.image: expected 12 numbers"),
        (client.post("/items", content=b'{"id": "x2", "features": {"image": [NaN' + b', 0' * 11
                     + b'], "text": [0, 0, 0, 0, 0, 0, 0, 0]}}',
                     headers={"content-type": "application/json"}), 422, "NaN"),
        (client.post("/items", json={"id": "x3", "features": _features(data, sound=[1.0])}),
         422, "features.sound: unknown modality"),
        (client.post("/items", json={"id": "x4", "features": {}}), 422, "features"),
        (client.post("/items", json={"id": "i0", "features": _features(data)}), 409, "exists"),
        (client.post("/items", json={"id": "x5", "text": {"text": "a film"}}), 422,
         "not made by mmssl's text encoder"),
        (client.post("/items", json={"id": "x6", "features": {"image": ["a"] * 12}}), 422,
         "features.image"),
        (client.post("/users", json={"id": "nu", "items": ["i0", "nothing"]}), 404, "nothing"),
        (client.post("/users", json={"id": "u0", "items": ["i0"]}), 409, "exists"),
        (client.post("/users", json={"id": "nu2", "items": []}), 422, "items:"),
        (client.post("/users", json={"items": ["i0"]}), 422, "id:"),
    ]
    for r, status, message in cases:
        assert r.status_code == status, (r.request.content[:80], r.text)
        assert message in r.json()["error"], r.text
    assert client.get("/health").json()["status"] == "ok"  # still serving


def test_openapi_docs_and_the_page_are_served(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/recommend", "/items", "/users", "/items/{item_id}/similar", "/health"} <= set(spec["paths"])
    page = client.get("/")
    assert page.status_code == 200 and "mmssl serve" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN


def test_with_the_faiss_index_seen_items_stay_out_and_new_items_come_in(vbpr_run, data):
    pytest.importorskip("faiss", reason="faiss-cpu is not installed: pip install 'mmssl[serve]'")
    from .conftest import Server

    server = Server(vbpr_run, "--index", "faiss").wait()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/health").json()["index"] == "faiss-ivf"
            seen = set(data.item_ids[data.matrix("train")[5].indices])
            items = client.get("/recommend", params={"user": "u5", "k": 20}).json()["items"]
            assert len(items) == 20 and not seen & {i["id"] for i in items}
            best = client.get("/recommend", params={"user": "u5", "k": 1}).json()["items"][0]["id"]
            features = {m: np.asarray(f)[data.item_index(best)].tolist() for m, f in data.features.items()}
            assert client.post("/items", json={"id": "faiss-new", "features": features}).status_code == 201
            items = client.get("/recommend", params={"user": "u5", "k": 20}).json()["items"]
            assert "faiss-new" in {i["id"] for i in items}
    finally:
        server.stop()
