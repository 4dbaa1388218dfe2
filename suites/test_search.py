"""Stage qdrant, through the service: a document written through the data API is found again by
vector search - the service really writes its vectors to Qdrant and reads them back."""

from __future__ import annotations

import uuid

import pytest

from aidb_gate.core import http

pytestmark = [pytest.mark.p1, pytest.mark.qdrant]


@pytest.mark.gate_requires("data.documents", "data.search")
def test_a_written_document_is_found_by_vector_search(gate_url, gate_api_key, gate_config):
    data = gate_config.data
    marker = uuid.uuid4().hex
    body = {"title": f"search probe {marker}", "content": f"vector search probe {marker} about restoring backups"}
    created = http.request("POST", gate_url + data["create_path"], json=body, headers={data["key_header"]: gate_api_key},
                           deadline_s=30)
    assert created.status_code in (200, 201), f"POST {data['create_path']} answered {created.status_code}: {created.text[:300]}"
    doc_id = http.json_of(created, error=AssertionError)["id"]
    found = http.request("POST", gate_url + data["search_path"], json={"query": body["content"], "limit": 5}, deadline_s=30)
    assert found.status_code == 200, f"POST {data['search_path']} answered {found.status_code}: {found.text[:300]}"
    results = http.json_of(found, error=AssertionError).get("results", [])
    assert results and results[0].get("id") == doc_id, (
        f"searching for the exact text of document {doc_id} did not return it first: {results[:3]} - the vector "
        "was not written to Qdrant, or search does not read it")
