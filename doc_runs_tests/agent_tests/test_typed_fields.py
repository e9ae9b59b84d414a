"""The openai backend gives the same normalized types as the offline one: a real
chat-completions server on 127.0.0.1 answers every field loosely, as documents write values
("6th day of May, 2021", "$1,250.50", "ACME WIDGETS, INC., a Delaware corporation"), and
the loop hands back ISO dates, amounts with currencies and names without role words."""

from doc_runs.core.agent.backends import OpenAIBackend
from doc_runs.core.agent.client import ModelClient
from doc_runs.core.agent.ledger import DocumentLedger, Pricing
from doc_runs.core.agent.loop import AgentLimits, FindingsAgent
from doc_runs.core.fields.spec import FieldSpec
from doc_runs.core.fields.values import Duration, Money
from doc_runs.core.store import DocumentStore
from doc_runs_tests.chat_server import ScriptedChatServer
from doc_runs_tests.helpers import AGREEMENT_ID, agreement_tools

TYPED = [
    FieldSpec(name="signed_on", description="when it was signed", type="date"),
    FieldSpec(name="term", description="how long it lasts", type="duration"),
    FieldSpec(name="fee", description="the fee", type="money"),
    FieldSpec(name="seats", description="how many seats", type="number"),
    FieldSpec(name="counterparties", description="who signs", type="party", many=True),
    FieldSpec(name="supplier", description="the supplier", type="organization"),
    FieldSpec(name="signatory", description="who signs for the supplier", type="person"),
    FieldSpec(name="governing_law", description="governing law", type="place"),
    FieldSpec(name="tier", description="service tier", type="enum",
              choices=("Gold", "Silver")),
    FieldSpec(name="notes", description="anything else"),
]


def test_the_openai_backend_answers_are_normalized_like_the_offline_ones(tmp_path) -> None:
    with ScriptedChatServer() as server:
        backend = OpenAIBackend(server.url, "test-key", "scripted", 5.0, 1 << 20)
        client = ModelClient(backend, DocumentStore(tmp_path),
                             DocumentLedger(Pricing(), 0, None))
        findings = FindingsAgent(client, agreement_tools(), TYPED, AgentLimits(),
                                 AGREEMENT_ID).run().fields
        schema = next(t for t in server.requests[0]["tools"]
                      if t["function"]["name"] == "submit_findings")["function"]["parameters"]

    values = {name: [v.value for v in answer.values] for name, answer in findings.items()}
    assert values == {
        "signed_on": ["2021-05-06"],
        "term": [Duration(amount=2, unit="years")],
        "fee": [Money(amount=1250.5, currency="USD")],
        "seats": [12.0],
        "counterparties": ["Acme Widgets, Inc."],
        "supplier": ["Acme Widgets, Inc."],
        "signatory": ["Jane Q. Roe"],
        "governing_law": ["New York"],
        "tier": ["Gold"],
        "notes": ["found"],
    }
    assert findings["signed_on"].values[0].text == "as written"  # the words beside the value
    assert all(answer.cited for answer in findings.values())
    # The tool schema the model saw carries the types.
    props = schema["properties"]
    assert props["signed_on"]["items"]["properties"]["value"]["format"] == "date"
    assert props["tier"]["items"]["properties"]["value"]["enum"] == ["Gold", "Silver"]
    assert set(props["term"]["items"]["properties"]["value"]["properties"]) == {"amount", "unit"}
    assert props["signed_on"]["maxItems"] == 1 and "maxItems" not in props["counterparties"]


def test_a_value_that_is_not_of_its_type_is_sent_back_and_never_kept(tmp_path) -> None:
    with ScriptedChatServer() as server:
        answered = {"n": 0}

        def date_that_is_no_date(body, n):
            if any(m["role"] == "tool" for m in body["messages"]):
                answered["n"] += 1
                return "not_a_date" if answered["n"] == 1 else None
            return None

        server.fault = date_that_is_no_date
        backend = OpenAIBackend(server.url, "test-key", "scripted", 5.0, 1 << 20)
        client = ModelClient(backend, DocumentStore(tmp_path),
                             DocumentLedger(Pricing(), 0, None))
        findings = FindingsAgent(client, agreement_tools(), TYPED[:1], AgentLimits(),
                                 AGREEMENT_ID).run()
        rejected = [m["content"] for body in server.requests for m in body["messages"]
                    if m["role"] == "user" and "rejected" in str(m["content"])]
    assert rejected and "not a date" in rejected[0]
    assert [v.value for v in findings.fields["signed_on"].values] == ["2021-05-06"]
