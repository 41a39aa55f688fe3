"""Inputs over a token budget lose the end of their longest field, never the template's question or cue."""

from pathlib import Path

from harness.truncation import render_within
from harness.types import Example, Template
from tiny import tiny_tokenizer

BODY = "{{ passage }}\nQuestion: {{ question }}?\nAnswer:"
TEMPLATE = Template(name="qa", task="qa", path=Path("qa.jinja"), source=BODY, text=BODY, description="",
                    verbalizers=("no", "yes"), delimiter=" ", separator="\n\n", sha256="0")


def test_a_long_passage_is_cut_inside_itself_and_the_question_survives():
    tokenizer = tiny_tokenizer()
    long = Example("a", {"passage": " ".join(["the film was long and good"] * 60), "question": "is it good"}, 1)
    short = Example("b", {"passage": "short one", "question": "is it short"}, 1)
    budget = 40
    cut, kept = render_within(TEMPLATE, [long, short], tokenizer, budget, reserve=2)
    assert cut.endswith("\nQuestion: is it good?\nAnswer:") and cut.startswith("the film was")
    assert len(tokenizer(cut)["input_ids"]) <= budget - 2
    assert len(tokenizer(cut)["input_ids"]) >= budget - 2 - 3  # cut by what was over, not far more
    assert kept == "short one\nQuestion: is it short?\nAnswer:"  # within the budget: untouched
    # what the tokenizer's own right truncation would have done: the question and the cue gone
    whole = TEMPLATE.source.replace("{{ passage }}", long.fields["passage"]).replace("{{ question }}", "is it good")
    right_cut = tokenizer.decode(tokenizer(whole, truncation=True, max_length=budget)["input_ids"])
    assert "Answer:" not in right_cut


def test_a_template_longer_than_the_budget_is_left_to_the_caller():
    tokenizer = tiny_tokenizer()
    example = Example("a", {"passage": "x", "question": "y"}, 0)
    assert render_within(TEMPLATE, [example], tokenizer, 3) == ["x\nQuestion: y?\nAnswer:"]
