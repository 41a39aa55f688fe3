import math

import pytest

from harness.prompts import answers, load_template, render_demo, render_input, render_prefix
from harness.predict import fit_demos, predict_prompting
from harness.sampling import draw_kshot
from harness.scoring import ScoreRequest, tokenize_requests
from harness.tasks import load_examples, load_task
from tiny import tiny_tokenizer


def test_zero_and_few_shot_predictions(toy_env, model, tokenizer):
    task = load_task("toy")
    template = load_template(task, "plain")
    test = load_examples(task, "test")
    demos = draw_kshot(load_examples(task, "train"), 2, 13, task.label_names).train
    for given in ((), demos):
        run = predict_prompting(model, tokenizer, 256, template, test, given, batch_size=3)
        assert [p.id for p in run.predictions] == [e.id for e in test]
        for p in run.predictions:
            assert math.isclose(sum(p.probs), 1.0, rel_tol=1e-6) and len(p.scores) == 2
            assert p.scores_norm == tuple(s / len(a) for s, a in zip(p.scores, [" not good !", " very good !"]))


def test_the_test_row_never_is_its_own_demo(toy_env, tokenizer):
    task = load_task("toy")
    template = load_template(task, "cloze")
    train, test = load_examples(task, "train"), load_examples(task, "test")
    twin = test[-1]  # the fixture copies train row 0 into test
    assert any(d.fields == twin.fields for d in train)
    demos = tuple(train[:4]) if train[0].fields == twin.fields else (train[0], *train[1:4])
    per_example = fit_demos(tokenizer, 256, template, test, demos, [" terrible", " great"])
    assert len(per_example[-1]) == len(demos) - 1
    assert all(d.fields != twin.fields for d in per_example[-1])
    assert all(len(kept) == len(demos) for kept in per_example[:-1])


def test_demos_are_dropped_to_fit_and_counted(toy_env, model, tokenizer):
    task = load_task("toy")
    template = load_template(task, "cloze")
    train, test = load_examples(task, "train"), load_examples(task, "test")[:3]
    demos = draw_kshot(train, 4, 13, task.label_names).train
    run = predict_prompting(model, tokenizer, 40, template, test, demos, batch_size=2)
    assert all(p.n_demos < len(demos) for p in run.predictions)
    roomy = predict_prompting(model, tokenizer, 256, template, test, demos, batch_size=2)
    assert all(p.n_demos == len(demos) for p in roomy.predictions)


def test_demos_are_fitted_exactly_as_the_scorer_tokenizes(toy_env):
    """Counting demos one by one undercounts a token per demo here ("\n\n" merges only at the end of a text);
    the old count cut every prompt from the left and lost the shared prefix. Fit exactly: never cut, never
    drop a demo that would have fitted."""
    tokenizer = tiny_tokenizer(merge_newlines=True)
    task = load_task("toy")
    template = load_template(task, "cloze")
    train, test = load_examples(task, "train"), load_examples(task, "test")[:6]
    demos = draw_kshot(train, 8, 13, task.label_names).train
    alone = sum(len(tokenizer(render_demo(template, d) + template.separator)["input_ids"]) for d in demos)
    joined = len(tokenizer(render_prefix(template, demos))["input_ids"])
    assert joined - alone == len(demos) - 1  # the case: a token more per demo when another follows it
    choices = tuple(answers(template))
    for max_length in (60, 90, 130):
        kept = fit_demos(tokenizer, max_length, template, test, demos, choices)
        units = tokenize_requests(tokenizer, [ScoreRequest(render_prefix(template, k), render_input(template, e),
                                                           choices) for e, k in zip(test, kept)], max_length)
        assert all(u.truncated == 0 for u in units)
        for example, k in zip(test, kept):
            assert 0 < len(k) < len(demos)
            more = demos[len(demos) - len(k) - 1:]  # the latest demos, one more than kept
            request = ScoreRequest(render_prefix(template, more), render_input(template, example), choices)
            assert tokenize_requests(tokenizer, [request], max_length)[0].truncated > 0


def test_calibration_by_hand():
    from harness.regimes.calibration import calibrate, mean_probabilities

    prior = mean_probabilities([(0.9, 0.1), (0.7, 0.3)])  # the LM leans to class 0 whatever the input
    assert prior == pytest.approx((0.8, 0.2))
    # (0.6 / 0.8, 0.4 / 0.2) = (0.75, 2.0) -> (0.75 / 2.75, 2.0 / 2.75): the prediction flips to class 1
    assert calibrate((0.6, 0.4), prior) == pytest.approx((0.75 / 2.75, 2.0 / 2.75))
    assert calibrate((0.5, 0.5), (0.5, 0.5)) == pytest.approx((0.5, 0.5))
    assert calibrate((0.3, 0.7), (0.0, 1.0)) == pytest.approx((0.3, 0.7))  # no mass in the prior: left as is


CHAT = ("{% for m in messages %}<{{ m.role }}> {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant> {% endif %}")


def test_chat_formatted_prompts_score_as_the_whole_chat_text(model, toy_env):
    """--chat-template: demos as user/assistant turns, the example as the last user turn, each class's label word
    as the assistant's first words; the scores equal naive scoring of the chat template's whole text."""
    import copy

    from harness.predict import predict_prompting
    from harness.prompts import load_template, render_input
    from harness.scoring import ScoreRequest, score_naive
    from harness.tasks import load_examples, load_task
    from tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = CHAT
    task = load_task("toy")
    template = load_template(task, "cloze")
    test = load_examples(task, "test")[:3]
    demos = draw_kshot(load_examples(task, "train"), 1, 13, task.label_names).train
    for shots in ((), demos):
        run = predict_prompting(model, tokenizer, 256, template, test, shots, 4, chat=True)
        for example, prediction in zip(test, run.predictions):
            turns = [t for d in shots for t in ({"role": "user", "content": render_input(template, d)},
                                                {"role": "assistant", "content": template.verbalizers[d.label]})]
            text = tokenizer.apply_chat_template([*turns, {"role": "user", "content": render_input(template, example)}],
                                                 tokenize=False, add_generation_prompt=True)
            (naive,) = score_naive(model, tokenizer, [ScoreRequest("", text, tuple(template.verbalizers))], 256)
            assert prediction.scores == pytest.approx(naive.logliks, abs=1e-4)
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    with pytest.raises(Exception, match="the model's tokenizer has no chat template"):
        predict_prompting(model, plain, 256, template, test, (), 4, chat=True)
