"""Compute budget per request (customizer/budget.py), the fair render gate (customizer/gate.py) and render
cancellation between steps (customizer/cancel.py), on real parts: the tiny pipeline, threads, tqdm."""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from customizer import budget, cancel
from customizer.budget import BudgetError
from customizer.gate import Busy, Cancelled, RenderGate

BUNDLED_LIKE = {"seconds_per_unit": 6.6, "max_render_seconds": 3.5, "max_seconds": 13, "max_side": 384}


def test_parse_validates_and_defaults():
    cfg = budget.parse(BUNDLED_LIKE)
    assert cfg.max_units == pytest.approx(13 / 6.6) and cfg.max_render_units == pytest.approx(3.5 / 6.6)
    assert budget.parse(None) is None
    for bad in ({"seconds_per_unit": 0, "max_seconds": 1, "max_render_seconds": 1}, {"max_seconds": 1},
                {**BUNDLED_LIKE, "max_side": 100}, {**BUNDLED_LIKE, "max_render_seconds": 20},
                {**BUNDLED_LIKE, "surprise": 1}, {**BUNDLED_LIKE, "upscale_factor": 0.5}, [1, 2]):
        with pytest.raises(ValueError):
            budget.parse(bad)


def test_the_issue_request_is_refused_with_estimate_and_limit():
    cfg = budget.parse(BUNDLED_LIKE)
    with pytest.raises(BudgetError) as err:
        budget.check(cfg, "request", 2048, 2048, 100, 4, per_render=4)
    msg = str(err.value)
    assert "4 images x 2048x2048 x 100 steps = 1677.72 megapixel-steps" in msg  # the estimate
    assert "about 11073 s" in msg and "at most 384" in msg and "1.97 megapixel-steps (about 13 s)" in msg


def test_each_limit_names_itself():
    cfg = budget.parse(BUNDLED_LIKE)
    with pytest.raises(BudgetError, match="limit per render is 0.53 megapixel-steps"):
        budget.check(cfg, "request", 256, 256, 30, 1)
    with pytest.raises(BudgetError, match="limit per request is 1.97"):
        budget.check(cfg, "request", 128, 128, 8, 16)  # 16 renders of 0.13 each: each fits, the sum does not
    est = budget.check(cfg, "request", 128, 128, 8, 4, per_render=4)  # the default design fits
    assert est.units == pytest.approx(0.524288) and est.seconds == pytest.approx(0.524288 * 6.6)
    assert budget.check(None, "request", 2048, 2048, 100, 4).seconds is None  # no budget, no limit


@pytest.mark.parametrize("kind_args", [dict(per_image=1, batched=True), dict(per_image=2), dict(per_image=1)])
@pytest.mark.parametrize("width,height,steps,images", [(128, 128, 8, 4), (128, 128, 8, 1), (256, 128, 4, 2),
                                                       (64, 64, 20, 3), (128, 128, 1, 1)])
def test_fit_offers_exactly_what_passes(kind_args, width, height, steps, images):
    cfg = budget.parse(BUNDLED_LIKE)
    f = budget.fit(cfg, width, height, steps, images, 100, 2048, 4, **kind_args)
    per = kind_args.get("per_image", 1)
    per_render = images if kind_args.get("batched") else 1

    def ok(w, h, s, n, pr):
        try:
            budget.check(cfg, "r", w, h, s, n * per, per_render=pr)
            return True
        except BudgetError:
            return False

    if ok(width, height, steps, images, per_render):
        assert ok(width, height, f.steps_max, images, per_render)
        assert ok(f.size_max, height, steps, images, per_render) and ok(width, f.size_max, steps, images,
                                                                        per_render)
        assert ok(width, height, steps, f.images_max, f.images_max if kind_args.get("batched") else 1)
        if f.steps_max < 100:
            assert not ok(width, height, f.steps_max + 1, images, per_render)
        if f.size_max < 384:
            assert not ok(max(width, height), f.size_max + 8, steps, images, per_render)


# ---------------------------------------------------------------- the Studio holds requests to it

@pytest.fixture
def budget_studio(studio):
    from customizer.service import Studio

    profile = dataclasses.replace(studio.profile, budget=budget.parse(
        {"seconds_per_unit": 100.0, "max_render_seconds": 2, "max_seconds": 4, "max_side": 64}))
    return Studio(studio.config, profile, studio.store, engine_factory=lambda p: studio.engine,
                  enforce_budget=True)


def test_over_budget_design_refused_in_under_a_second_before_anything(budget_studio):
    t0 = time.perf_counter()
    with pytest.raises(BudgetError, match="megapixel-steps"):
        budget_studio.design({}, seed=1, n=4, advanced={"width": 2048, "height": 2048, "steps": 100})
    assert time.perf_counter() - t0 < 1.0
    assert budget_studio.list_characters() == [] and budget_studio._engine is None


def test_over_budget_selfie_and_pack_refused_nothing_stored(budget_studio):
    out = budget_studio.design({}, seed=1, n=1)  # 32x32 x 3 steps: 0.003 megapixel-steps, fits
    cid = out["character"]["id"]
    budget_studio.lock(cid, out["candidates"][0]["id"])
    before = budget_studio.get_character(cid)
    for call in (lambda: budget_studio.selfie(cid, {}, seed=1, count=1, advanced={"steps": 100, "width": 64,
                                                                                   "height": 64}),
                 lambda: budget_studio.expression_pack(cid, seed=1, advanced={"steps": 100, "width": 64,
                                                                              "height": 64})):
        t0 = time.perf_counter()
        with pytest.raises(BudgetError):
            call()
        assert time.perf_counter() - t0 < 1.0
    after = budget_studio.get_character(cid)
    assert after["selfies"] == before["selfies"] and after["packs"] == before["packs"] == []


def test_library_use_is_not_held_to_the_budget(studio):
    studio_profile = dataclasses.replace(studio.profile, budget=budget.parse(
        {"seconds_per_unit": 100.0, "max_render_seconds": 0.01, "max_seconds": 0.01}))
    from customizer.service import Studio

    lib = Studio(studio.config, studio_profile, studio.store, engine_factory=lambda p: studio.engine)
    assert len(lib.design({}, seed=1, n=2)["candidates"]) == 2  # eval/bench pick their own settings


# ---------------------------------------------------------------- the render gate

def test_gate_serves_the_lightest_owner_first():
    gate = RenderGate(poll_s=0.01)
    order: list[str] = []
    hold = threading.Event()
    gate._charge("heavy", 100.0)  # the heavy user has been rendering

    def render(owner: str, wait: threading.Event | None = None):
        with gate.slot(owner):
            order.append(owner)
            if wait is not None:
                wait.wait(5)

    first = threading.Thread(target=render, args=("heavy", hold))
    first.start()
    while not order:
        time.sleep(0.01)
    waiting = [threading.Thread(target=render, args=(o,)) for o in ("heavy", "heavy", "light-a", "light-b")]
    for t in waiting:
        t.start()
        time.sleep(0.05)  # queued in this order: heavy, heavy, light-a, light-b
    hold.set()
    for t in [first, *waiting]:
        t.join(5)
    assert order[0] == "heavy" and order[1:3] == ["light-a", "light-b"] and order[3:] == ["heavy", "heavy"]


def test_gate_caps_requests_per_owner_and_releases_them():
    gate = RenderGate(per_owner=2)
    with gate.request("a"), gate.request("a"):
        with pytest.raises(Busy, match="at most 2"):
            with gate.request("a"):
                pass
        with gate.request("b"):  # others are not affected
            pass
    with gate.request("a"):
        pass


def test_a_waiting_request_whose_client_left_is_dropped():
    gate = RenderGate(poll_s=0.01)
    gone = threading.Event()
    hold = threading.Event()
    result: list[object] = []

    def holder():
        with gate.slot("x"):
            hold.wait(5)

    def waiter():
        try:
            with gate.slot("y", cancelled=gone.is_set):
                result.append("rendered")
        except Cancelled as e:
            result.append(e)

    h = threading.Thread(target=holder)
    h.start()
    time.sleep(0.05)
    w = threading.Thread(target=waiter)
    w.start()
    time.sleep(0.05)
    gone.set()
    w.join(2)
    assert isinstance(result[0], Cancelled) and gate.status()["waiting"] == 0
    hold.set()
    h.join(2)
    assert gate.status() == {"running": 0, "waiting": 0, "owners_in_flight": 0}


# ---------------------------------------------------------------- cancellation between steps

def test_cancel_hook_stops_a_tqdm_loop_only_when_asked():
    from tqdm.auto import tqdm

    assert cancel.install() and cancel.install()  # idempotent
    stop_at = 3
    seen = []
    with pytest.raises(Cancelled):
        with cancel.watching(lambda: len(seen) >= stop_at):
            with tqdm(total=10, disable=True) as bar:
                for i in range(10):
                    seen.append(i)
                    bar.update()
    assert len(seen) == stop_at
    with tqdm(total=3, disable=True) as bar:  # outside watching: nothing stops
        for _ in range(3):
            bar.update()


def test_a_render_is_stopped_mid_way_and_the_engine_still_renders(studio):
    """The real tiny pipeline: cancelled after its first step it raises, the next render is unaffected."""
    calls = {"n": 0}

    def gone():
        calls["n"] += 1
        return calls["n"] > 1  # the first step runs, the second is stopped

    with pytest.raises(Cancelled):
        studio.design({}, seed=3, n=1, advanced={"steps": 20}, cancelled=gone)
    assert calls["n"] >= 2
    assert studio.list_characters() == []  # the new draft had no candidate: nothing left behind
    out = studio.design({}, seed=3, n=1)
    assert len(out["candidates"]) == 1
