import pytest
import torch

from harness.scoring import ScoreRequest, ScoreStats, score_naive, score_requests, tokenize_requests

PREFIX = "the movie was great . it was good\n\nthe plot was bad . it was terrible\n\n"
REQUESTS = [
    ScoreRequest("", "the acting was very good . it was", (" great", " terrible")),  # one token each
    ScoreRequest("", "bad film . it was", (" very good !", " not good", " zebra crossing")),  # several tokens
    ScoreRequest(PREFIX, "this film is good . it was", (" great", " terrible")),
    ScoreRequest(PREFIX, "a", (" great", " bad movie")),
    ScoreRequest(PREFIX, "the film of the year ? it was", ("great", "terrible")),  # answer merges with no space
    ScoreRequest("the plot\n\n", "is", (" good", " bad")),
]


def _max_gap(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra.logliks, rb.logliks))


@pytest.mark.parametrize("batch_size", [1, 2, 3, 16])
def test_shortcuts_match_naive_scoring(model, tokenizer, batch_size):
    fast = score_requests(model, tokenizer, REQUESTS, batch_size, 256)
    naive = score_naive(model, tokenizer, REQUESTS, 256)
    assert _max_gap(fast, naive) < 1e-4
    assert [len(r.logliks) for r in fast] == [len(r.continuations) for r in REQUESTS]


def test_single_token_answers_need_one_pass_per_batch(model, tokenizer):
    stats = ScoreStats()
    requests = [REQUESTS[0]] * 5
    score_requests(model, tokenizer, requests, 8, 256, stats)
    assert stats.forwards == 1
    naive = ScoreStats()
    score_naive(model, tokenizer, requests, 256, naive)
    assert naive.forwards == 10 and stats.tokens < naive.tokens


def test_shared_prefix_is_encoded_once(model, tokenizer):
    stats = ScoreStats()
    requests = [ScoreRequest(PREFIX, f"the film {w} . it was", (" great", " terrible")) for w in ("is", "was", "of")]
    score_requests(model, tokenizer, requests, 1, 256, stats)
    prefix_tokens = len(tokenizer(PREFIX)["input_ids"])
    context_tokens = sum(len(tokenizer(r.context)["input_ids"]) for r in requests)
    assert stats.tokens == prefix_tokens + context_tokens  # the prefix once, every context once
    assert stats.forwards == 1 + 3


def test_results_come_back_in_input_order(model, tokenizer):
    each = [score_naive(model, tokenizer, [r], 256)[0] for r in REQUESTS]
    assert _max_gap(score_requests(model, tokenizer, REQUESTS, 2, 256), each) < 1e-4


def test_tokens_split_as_the_whole_string_tokenizes(tokenizer):
    unit = tokenize_requests(tokenizer, [ScoreRequest("", "the movie was", (" great",))], 256)[0]
    whole = tokenizer("the movie was great", add_special_tokens=False)["input_ids"]
    assert [*unit.prefix, *unit.context, *unit.continuations[0]] == whole
    assert unit.continuations[0] == tokenizer(" great", add_special_tokens=False)["input_ids"]


def test_too_long_prompt_is_cut_from_the_left_and_reported(model, tokenizer):
    request = ScoreRequest(PREFIX, "this film is good . it was", (" great", " terrible"))
    full = len(tokenizer(PREFIX + request.context)["input_ids"]) + 1
    fast = score_requests(model, tokenizer, [request], 4, 12)
    naive = score_naive(model, tokenizer, [request], 12)
    assert fast[0].truncated_tokens == full - 12 > 0
    assert _max_gap(fast, naive) < 1e-4


def test_packs_are_bounded_by_their_attention_size(model, tokenizer, monkeypatch):
    """Sixteen long prompts without a shared prefix once went into one row with a 131k x 131k mask."""
    import harness.scoring as scoring

    requests = [ScoreRequest("", " ".join(["the movie was very good"] * (4 + i)), (" great", " bad")) for i in range(6)]
    packed = []
    original = scoring._score_pack

    def spy(model_, prefix_len, cache, batch, stats):
        size = sum(len(u.context) + sum(len(c) - 1 for c in u.continuations) for u in batch)
        packed.append((len(batch), size * (prefix_len + size)))
        return original(model_, prefix_len, cache, batch, stats)

    monkeypatch.setattr(scoring, "_score_pack", spy)
    monkeypatch.setattr(scoring, "_padded_is_cheaper", lambda *args: False)  # packing is what this test bounds
    monkeypatch.setattr(scoring, "PACK_ATTENTION_ELEMENTS", 60 * 60)
    fast = score_requests(model, tokenizer, requests, 16, 256)
    assert len(packed) > 1 and all(elements <= 60 * 60 or n == 1 for n, elements in packed)
    assert _max_gap(fast, score_naive(model, tokenizer, requests, 256)) < 1e-4


def test_a_bf16_model_scores_its_answers_with_an_fp32_output_layer(tokenizer):
    """Under bf16 the answer log-likelihoods come from the bf16 hidden states through the output layer in fp32."""
    from harness.scoring import ScoreRequest, score_requests
    from tiny import tiny_model

    model = tiny_model(len(tokenizer), seed=3).to(torch.bfloat16)
    request = ScoreRequest("", "the movie was", (" great", " terrible"))
    (result,) = score_requests(model, tokenizer, [request], 8, 256)
    ids = tokenizer("the movie was great", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hidden = model.get_decoder()(input_ids=torch.tensor([ids])).last_hidden_state[0, -2]
        logp = torch.log_softmax(hidden.float() @ model.lm_head.weight.float().T, -1)
        bf16 = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -2], -1)  # the old way, in bf16
    assert result.logliks[0] == pytest.approx(logp[ids[-1]].item(), abs=1e-5)  # bf16 logits: 2e-4 off here
    assert bf16.dtype == torch.bfloat16


def test_padded_rows_match_naive_scoring_where_they_are_chosen(model, tokenizer, monkeypatch):
    """Zero-shot prompts with one-token answers may go as right-padded rows instead of one packed row."""
    import harness.scoring as scoring

    padded, packed = [], []
    real_padded, real_pack = scoring._score_padded, scoring._score_pack
    monkeypatch.setattr(scoring, "_attention_weight", lambda model_: 10.0)  # attention dominates: padding wins
    monkeypatch.setattr(scoring, "_score_padded", lambda m, b, s: (padded.append(len(b)), real_padded(m, b, s)))
    monkeypatch.setattr(scoring, "_score_pack", lambda m, p, c, b, s: (packed.append(len(b)), real_pack(m, p, c, b, s)))
    requests = [*REQUESTS, ScoreRequest("", "the plot was very bad and the film was not good . it was", (" great", " bad")),
                ScoreRequest("", "the plot", (" was very bad and the film was not good .",))]  # one long answer (NLL)
    fast = score_requests(model, tokenizer, requests, 16, 256)
    assert padded and packed  # one-token zero-shot answers padded; prefixes and longer answers packed
    assert _max_gap(fast, score_naive(model, tokenizer, requests, 256)) < 1e-4


def test_onednn_linears_agree_with_torch_and_are_undone(model, tokenizer, monkeypatch):
    from harness import cpu_linear

    if not cpu_linear.onednn_usable():
        pytest.skip("this torch has no usable oneDNN linear op")
    monkeypatch.setattr(cpu_linear, "MIN_WEIGHT_ELEMENTS", 0)  # the tiny model's layers are all small
    monkeypatch.setenv(cpu_linear.CHOICE_ENV, "onednn")  # forced: which path is faster depends on the machine
    ids = torch.tensor([[3, 5, 7, 9, 11], [4, 6, 8, 10, 12]])
    with torch.inference_mode():
        plain = model(input_ids=ids).logits
        calls = []
        original = torch.ops.mkldnn._linear_pointwise
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(1) or original(*a))
        with cpu_linear.onednn_linears(model):
            routed = model(input_ids=ids).logits
    assert calls, "the linear layers did not go through oneDNN"
    assert (routed - plain).abs().max() < 1e-4
    assert not any("forward" in vars(m) for m in model.modules())  # the layers are as they were
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", original)
    with cpu_linear.onednn_linears(model):  # gradients: the plain path, which autograd can differentiate
        model(input_ids=ids).logits.sum().backward()
    assert all(p.grad is not None for p in model.lm_head.parameters())
    model.zero_grad(set_to_none=True)


def test_onednn_linears_can_be_turned_off(model, monkeypatch):
    from harness import cpu_linear

    monkeypatch.setenv("HARNESS_CPU_LINEAR", "torch")
    cpu_linear.onednn_usable.cache_clear()
    try:
        with cpu_linear.onednn_linears(model):
            assert not any("forward" in vars(m) for m in model.modules())
    finally:
        monkeypatch.undo()
        cpu_linear.onednn_usable.cache_clear()


def test_the_faster_path_is_measured_once_per_machine_and_cached(model, monkeypatch, tmp_path):
    from harness import cpu_linear

    if not cpu_linear.onednn_usable():
        pytest.skip("this torch has no usable oneDNN linear op")
    monkeypatch.setattr(cpu_linear, "MIN_WEIGHT_ELEMENTS", 0)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    monkeypatch.delenv(cpu_linear.CHOICE_ENV, raising=False)
    for faster, timings in (("torch", {"torch": 1.0, "onednn": 2.0}), ("onednn", {"torch": 2.0, "onednn": 1.0})):
        cpu_linear._measured.cache_clear()
        (tmp_path / "cpu-kernels.json").unlink(missing_ok=True)
        timed = []
        monkeypatch.setattr(cpu_linear, "_time_paths", lambda shapes, t=timings: timed.append(shapes) or dict(t))
        with cpu_linear.onednn_linears(model):
            routed = any("forward" in vars(m) for m in model.modules())
        assert routed == (faster == "onednn") and cpu_linear.choice()["path"] == faster and len(timed) == 1
        assert (32, 32) in timed[0] and all(shape[0] != model.lm_head.out_features for shape in timed[0])
        cpu_linear._measured.cache_clear()  # a new process: read from the cache, not measured again
        with cpu_linear.onednn_linears(model):
            pass
        assert len(timed) == 1 and cpu_linear.choice()["how"] == "measured on this machine (cached)"
        key = cpu_linear.choice()["key"]
        assert key.startswith(torch.backends.cpu.get_cpu_capability()) and f"threads {torch.get_num_threads()}" in key
    cpu_linear._measured.cache_clear()


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_a_sliding_window_model_scores_as_naive(tokenizer, batch_size):
    """Gemma 3's local layers (window 4 here, shorter than the prompts): no shared-prefix cache, no packed row."""
    from tiny import tiny_family_model

    from harness.scoring import _has_sliding_window

    gemma = tiny_family_model("gemma3_text", len(tokenizer))
    assert _has_sliding_window(gemma)
    fast = score_requests(gemma, tokenizer, REQUESTS, batch_size, 256)
    naive = score_naive(gemma, tokenizer, REQUESTS, 256)
    assert _max_gap(fast, naive) < 1e-4
