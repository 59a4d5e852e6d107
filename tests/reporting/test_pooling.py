"""Which records a leaderboard row pools (benchmark/reporting/pooling.py): only repeats (equal in
everything but the seed and the domain order), the rest as rows labelled by what differs,
disagreeing records of one run flagged, --group-by / --where. Hand-made records, no runs."""
import copy
import json

import numpy as np
import pytest

from benchmark.reporting.leaderboard import (display_frame, leaderboard_frame, render_csv,
                                             render_latex, render_markdown, render_terminal,
                                             report_main, write_heatmaps)
from benchmark.reporting.pooling import Pooling, ReportError, apply_where, lookup
from benchmark.reporting.records import RunRecord, write_record

DOMAINS = ["polyp", "shadow", "natural"]
SHA = "3f2a1b2c" + "0" * 56


def fingerprint(seed=1, order=("polyp", "shadow"), train_per_domain=4, sha=SHA, lr=1e-3,
                threads=2):
    return {"stream": {"name": "tiny", "order": list(order), "order_seed": None,
                       "synthetic": {"train_per_domain": train_per_domain}},
            "data": {"polyp": "aa", "shadow": "bb"}, "backbone": {"name": "sam_small"},
            "weights": {"sha256": sha}, "hparams": {"lr": lr, "epochs": 2},
            "protocol": "project", "precision": "fp32", "code": {"commit": "c0ffee", "dirty": False},
            "numerics": {"threads": threads}, "seed": seed}


def make(method="finetune_decoder", seed=1, final=0.5, fp=None, order=("polyp", "shadow"),
         run_id=None, created="2026-01-01T00:00:00+00:00", config=None, hparams=None):
    """A record whose AA mIoU is ``final`` (both trained domains end at it)."""
    iou = np.array([[0.2, 0.2, 0.3], [0.6, 0.2, 0.3], [final, final, 0.3]])
    domains = list(order) + ["natural"]
    extra = {} if run_id is None else {"run_id": run_id}
    return RunRecord(method=method, backbone="sam_small",
                     stream={"name": "tiny", "domains": domains, "trained": 2,
                             "eval_only": ["natural"]},
                     seed=seed, matrices={"iou": iou, "dice": iou, "mae": 1 - iou},
                     config=config or {}, hparams=hparams or {"lr": 1e-3, "epochs": 2},
                     extra=extra, created=created, fingerprint=fp or {})


def rows(records, **kw):
    return leaderboard_frame(records, Pooling(**kw)).set_index("method")


# ------------------------------------------------------------------- what is and is not pooled
def test_seeds_of_one_setting_pool():
    frame = rows([make(seed=1, final=0.5, fp=fingerprint(seed=1)),
                  make(seed=2, final=0.7, fp=fingerprint(seed=2))])
    assert list(frame.index) == ["finetune_decoder"]
    assert frame.loc["finetune_decoder", "seeds"] == 2
    assert frame.loc["finetune_decoder", "AA_iou_mean"] == pytest.approx(0.6)


def test_same_seed_other_train_per_domain_not_pooled():
    """Issue 17: runs with train_per_domain 3 and 4, same seed, were one row "± 0.20, Seeds 1"."""
    frame = rows([make(final=0.5, fp=fingerprint(train_per_domain=3)),
                  make(final=0.7, fp=fingerprint(train_per_domain=4))])
    assert sorted(frame.index) == ["finetune_decoder [stream.synthetic.train_per_domain=3]",
                                   "finetune_decoder [stream.synthetic.train_per_domain=4]"]
    assert set(frame["seeds"]) == {1}
    assert frame["AA_iou_std"].isna().all()                   # one record each: no ±
    disp = display_frame(leaderboard_frame([make(final=0.5, fp=fingerprint(train_per_domain=3)),
                                            make(final=0.7, fp=fingerprint(train_per_domain=4))]))
    assert not any("±" in cell for cell in disp["AA mIoU ↑"])


def test_same_seed_other_train_per_domain_not_pooled_without_fingerprint():
    """Records made before fingerprints: the run config's stream overrides tell them apart."""
    a = make(final=0.5, run_id="r1", config={"stream_overrides": {"synthetic": {"train_per_domain": 3}}})
    b = make(final=0.7, run_id="r2", config={"stream_overrides": {"synthetic": {"train_per_domain": 4}}})
    frame = rows([a, b])
    assert len(frame) == 2 and set(frame["seeds"]) == {1}
    assert "finetune_decoder [stream_overrides.synthetic.train_per_domain=3]" in frame.index


def test_other_checkpoints_not_pooled():
    other = "9d8e7f6a" + "1" * 56
    frame = rows([make(final=0.5, fp=fingerprint(sha=SHA)),
                  make(final=0.7, fp=fingerprint(sha=other))])
    assert sorted(frame.index) == ["finetune_decoder [weights.sha256 3f2a1b2c…]",
                                   "finetune_decoder [weights.sha256 9d8e7f6a…]"]
    old = rows([make(final=0.5, run_id="x", config={"checkpoint": "/a/x.pth"}),
                make(final=0.7, run_id="x2", config={"checkpoint": "/b/x.pth"})])
    assert sorted(old.index) == ["finetune_decoder [checkpoint=/a/x.pth]",
                                 "finetune_decoder [checkpoint=/b/x.pth]"]


def test_every_other_part_is_its_own_row():
    frame = rows([make(fp=fingerprint(threads=1)), make(fp=fingerprint(threads=2)),
                  make(fp=fingerprint(lr=3e-4))])
    assert len(frame) == 3
    # hyper-parameters by their bare name, other parts by their dotted key
    assert set(frame.index) == {"finetune_decoder [lr=0.001, numerics.threads=1]",
                                "finetune_decoder [lr=0.001, numerics.threads=2]",
                                "finetune_decoder [lr=0.0003, numerics.threads=2]"}


def test_records_with_and_without_fingerprint_are_apart():
    frame = rows([make(seed=1, fp=fingerprint(seed=1)), make(seed=2)])
    assert sorted(frame.index) == ["finetune_decoder", "finetune_decoder [no fingerprint]"]


# ------------------------------------------------------------------- orders
def test_orders_pool_by_default_and_split_on_request():
    reverse = ("shadow", "polyp")
    recs = [make(seed=1, final=0.5, fp=fingerprint(seed=1)),
            make(seed=1, final=0.7, order=reverse, fp=fingerprint(seed=1, order=reverse)),
            make(seed=2, final=0.6, fp=fingerprint(seed=2))]
    frame = rows(recs)
    assert list(frame.index) == ["finetune_decoder"]
    assert (frame.loc["finetune_decoder", "seeds"], frame.loc["finetune_decoder", "orders"]) == (2, 2)
    assert frame.loc["finetune_decoder", "AA_iou_mean"] == pytest.approx(0.6)
    split = rows(recs, pool_orders=False)
    assert sorted(split.index) == ["finetune_decoder [order=polyp→shadow]",
                                   "finetune_decoder [order=shadow→polyp]"]
    assert split.loc["finetune_decoder [order=polyp→shadow]", "seeds"] == 2
    text = render_terminal(recs)
    assert "Orders" in text and "over seeds and domain orders" in text.replace("\n", " ")
    assert "2 orders of polyp, shadow" in text.replace("\n", " ")
    assert "over seeds (" in render_markdown(recs, Pooling(pool_orders=False))


def test_orders_of_old_records_are_counted():
    recs = [make(run_id="a"), make(run_id="b", order=("shadow", "polyp"),
                                   config={"stream_overrides": {"order_seed": 3}})]
    frame = rows(recs)
    assert len(frame) == 1 and frame.iloc[0]["orders"] == 2


# ------------------------------------------------------------------- disagreeing records of one run
def test_disagreeing_records_of_one_run_are_flagged_not_dropped(tmp_path, capsys):
    """Issue 17: two records of one run id that disagree (e.g. made with 1 and 2 threads): the
    later was kept silently. Now the row is marked and a note names the run and the difference."""
    early = make(final=0.5, run_id="abc123", created="2026-01-01T00:00:00+00:00")
    late = make(final=0.55, run_id="abc123", created="2026-01-02T00:00:00+00:00")
    frame = leaderboard_frame([early, late])
    assert len(frame) == 1 and bool(frame.iloc[0]["flag"])
    (note,) = frame.attrs["notes"]
    assert "abc123" in note and "2 records disagree" in note and "iou in 2 of 9 cells" in note
    assert display_frame(frame).iloc[0]["Method"] == "finetune_decoder †"
    for text in (render_terminal([early, late]), render_markdown([early, late])):
        assert "finetune_decoder †" in text and note in text
    assert "$\\dagger$" in render_latex([early, late])
    assert "True" in render_csv([early, late])
    results = tmp_path / "results"
    write_record(early, results)
    write_record(late, results)
    assert report_main([str(results)], str(tmp_path / "t"), formats=("markdown",),
                       heatmaps=False) == 0
    assert "abc123" in capsys.readouterr().out


def test_disagreeing_records_of_one_fingerprint_are_flagged():
    a = make(final=0.5, fp=fingerprint(), created="2026-01-01T00:00:00+00:00")
    b = make(final=0.6, fp=fingerprint(), created="2026-01-02T00:00:00+00:00")
    frame = leaderboard_frame([a, b])
    assert len(frame) == 1 and bool(frame.iloc[0]["flag"]) and frame.iloc[0]["seeds"] == 1
    assert frame.iloc[0]["AA_iou_mean"] == pytest.approx(0.6)   # the latest


def test_identical_copies_count_once_unflagged():
    a = make(final=0.5, run_id="same")
    frame = leaderboard_frame([a, copy.deepcopy(a), make(seed=2, final=0.7, run_id="other")])
    assert len(frame) == 1 and frame.iloc[0]["seeds"] == 2 and not frame.iloc[0]["flag"]
    assert frame.attrs["notes"] == []


# ------------------------------------------------------------------- out of range
def test_out_of_range_record_is_not_averaged(tmp_path, capsys):
    results = tmp_path / "results"
    write_record(make(seed=1, final=0.5, run_id="a"), results)
    path = write_record(make(seed=2, final=0.7, run_id="b"), results)
    data = json.loads(path.read_text())
    data["matrices"]["iou"][2][0] = 5.0
    path.write_text(json.dumps(data))
    assert report_main([str(results)], str(tmp_path / "t"), formats=("csv",), heatmaps=False) == 0
    csv = (tmp_path / "t" / "leaderboard.csv").read_text().splitlines()
    assert len(csv) == 2 and ",1,1,False," in csv[1]        # one seed left, one order, no flag


# ------------------------------------------------------------------- --group-by / --where
def test_group_by_splits_and_shows_a_column(tmp_path):
    recs = [make(seed=1, hparams={"lr": 1e-3, "epochs": 2}, fp=fingerprint(seed=1, lr=1e-3)),
            make(seed=2, hparams={"lr": 1e-3, "epochs": 2}, fp=fingerprint(seed=2, lr=1e-3)),
            make(seed=1, hparams={"lr": 3e-4, "epochs": 2}, fp=fingerprint(seed=1, lr=3e-4))]
    pooling = Pooling(group_by=("hparams.lr",))
    frame = leaderboard_frame(recs, pooling)
    assert list(frame["hparams.lr"]) == ["0.0003", "0.001"]
    assert list(frame["method"]) == ["finetune_decoder"] * 2    # the key is a column, not a tag
    assert list(frame["seeds"]) == [1, 2]
    assert "hparams.lr" in display_frame(frame).columns
    per_seed = leaderboard_frame(recs[:2], Pooling(group_by=("seed",)))
    assert list(per_seed["seeds"]) == [1, 1]
    assert len(write_heatmaps(recs, tmp_path, pooling=pooling)) == 2


def test_where_filters_on_dotted_keys():
    recs = [make(seed=1, fp=fingerprint(seed=1)), make(seed=2, fp=fingerprint(seed=2, lr=3e-4),
                                                       hparams={"lr": 3e-4, "epochs": 2})]
    assert [r.seed for r in apply_where(recs, ["hparams.lr=3e-4"])] == [2]
    assert [r.seed for r in apply_where(recs, ["lr=0.0003"])] == [2]
    assert [r.seed for r in apply_where(recs, ["weights.sha256=" + SHA, "seed=1"])] == [1]
    assert [r.seed for r in apply_where(recs, ["order=polyp,shadow"])] == [1, 2]
    assert lookup(recs[0], "stream") == "tiny" and lookup(recs[0], "numerics.threads") == 2


@pytest.mark.parametrize("option, value, message", [
    ("where", "hparams.lrr=1", "--where 'hparams.lrr': no record has this key; did you mean hparams.lr"),
    ("where", "lr", "--where expects KEY=VALUE"),
    ("where", "seed=9", "--where seed=9: no record matches (values: 1, 2)"),
    ("group_by", "backbon", "--group-by 'backbon': no record has this key; did you mean backbone"),
])
def test_bad_keys_are_one_line_errors(tmp_path, capsys, option, value, message):
    results = tmp_path / "results"
    write_record(make(seed=1, run_id="a"), results)
    write_record(make(seed=2, run_id="b"), results)
    kw = {"where": [value]} if option == "where" else {"pooling": Pooling(group_by=(value,))}
    assert report_main([str(results)], str(tmp_path / "t"), heatmaps=False, **kw) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    with pytest.raises(ReportError):
        if option == "where":
            apply_where([make(seed=1), make(seed=2)], [value])
        else:
            raise ReportError(err)


def test_file_locations_do_not_split_rows():
    """Where the stream YAML or the generated images live changes no number."""
    fp_a, fp_b = fingerprint(seed=1), fingerprint(seed=2)
    fp_a["stream"].update(source="/a/tiny.yaml", synthetic={"train_per_domain": 4, "cache_dir": "/a"})
    fp_b["stream"].update(source="/b/tiny.yaml", synthetic={"train_per_domain": 4, "cache_dir": "/b"})
    assert len(rows([make(seed=1, fp=fp_a), make(seed=2, fp=fp_b)])) == 1
    old = [make(seed=s, run_id=str(s), config={"stream_overrides": {"synthetic": {"cache_dir": d}}})
           for s, d in ((1, "/a"), (2, "/b"))]
    assert len(rows(old)) == 1
