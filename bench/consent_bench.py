"""How long one consent decision takes: median and p99 of evaluate() per call.

    .venv/bin/python bench/consent_bench.py [--iterations 20000] [--check]

Each call is timed on its own with time.perf_counter_ns; the same loop around a trivial function gives the
baseline (the cost of the loop and the clock), printed beside it. The consent is three levels deep with
five provisions; the requests ask for one item and for eight. --check exits 1 when the one-item median,
less the baseline, is over the 20 µs target.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from consent import (
    ACTION_ACCESS,
    ASSIGNED_PEER_ROLE,
    PURPOSE_COC,
    ROLE_IRCP,
    AccessRequest,
    ActorRule,
    Coding,
    ConsentRecord,
    DataCategory,
    Decision,
    Period,
    Provision,
    RequestedItem,
    evaluate,
)
from consent.categories import ACT_CODE_SYSTEM, CONFIDENTIALITY_SYSTEM, category_coding

TARGET_NS = 20_000
R = Coding(CONFIDENTIALITY_SYSTEM, "R")
MH = Coding(ACT_CODE_SYSTEM, "MH")
AT = datetime(2024, 6, 1, 12, tzinfo=UTC)

CONSENT = ConsentRecord(
    id="bench",
    status="active",
    scope="patient-privacy",
    patient="Patient/client-1",
    date_time=datetime(2024, 1, 1, tzinfo=UTC),
    provision=Provision(  # level 1
        type="permit",
        period=Period(datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
        security_labels=(),
        provisions=(
            Provision(  # level 2: no restricted data to the old unit
                type="deny", actors=(ActorRule(ROLE_IRCP, "Organization/54"),), security_labels=(R,)
            ),
            Provision(  # level 2: the peer may see the diagnosis and mental-health-labelled data
                type="permit",
                actors=(ActorRule(ASSIGNED_PEER_ROLE, None),),
                purposes=(PURPOSE_COC,),
                codes=(category_coding(DataCategory.DIAGNOSIS), category_coding(DataCategory.INTERESTS)),
                security_labels=(MH,),
                provisions=(
                    Provision(  # level 3: ... but nothing recorded before 2024
                        type="deny", data_period=Period(end=datetime(2023, 12, 31, tzinfo=UTC))
                    ),
                ),
            ),
            Provision(type="deny", codes=(category_coding(DataCategory.CONTACT_DETAILS),), actors=(
                ActorRule(None, "Practitioner/peer-2"),
            )),  # level 2
        ),
    ),
)  # fmt: skip

ITEMS = (
    RequestedItem(DataCategory.PREFERRED_NAME, resource_types=frozenset({"Patient"})),
    RequestedItem(DataCategory.CONTACT_DETAILS, resource_types=frozenset({"Patient"})),
    RequestedItem(DataCategory.ADMISSION_DISCHARGE, data_date=datetime(2024, 5, 30, tzinfo=UTC)),
    RequestedItem(DataCategory.UPCOMING_APPOINTMENTS, resource_types=frozenset({"Appointment"})),
    RequestedItem(DataCategory.RECOVERY_GOALS, reference="Goal/g1"),
    RequestedItem(DataCategory.INTERESTS, security_labels=frozenset({MH}), data_date=AT),
    RequestedItem(DataCategory.SAFETY_CONSIDERATIONS, security_labels=frozenset({R})),
    RequestedItem(DataCategory.DIAGNOSIS, security_labels=frozenset({MH}), data_date=AT),
)


def request(items: tuple[RequestedItem, ...]) -> AccessRequest:
    return AccessRequest(
        patient="Patient/client-1",
        actor_reference="Practitioner/peer-1",
        actor_roles=frozenset({ASSIGNED_PEER_ROLE, ROLE_IRCP}),
        purpose=PURPOSE_COC,
        action=ACTION_ACCESS,
        items=items,
        at=AT,
    )


def trivial(consents: Sequence[ConsentRecord], req: AccessRequest) -> Decision | None:
    return None


def timings(
    fn: Callable[[Sequence[ConsentRecord], AccessRequest], Decision | None],
    req: AccessRequest,
    iterations: int,
) -> list[int]:
    consents = [CONSENT]
    for _ in range(min(iterations, 1000)):  # warm up
        fn(consents, req)
    clock = time.perf_counter_ns
    samples = [0] * iterations
    gc.disable()  # a collection landing in one sample says nothing about the engine
    try:
        for i in range(iterations):
            start = clock()
            fn(consents, req)
            samples[i] = clock() - start
    finally:
        gc.enable()
    return samples


def summary(samples: list[int]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--check", action="store_true", help="exit 1 when the one-item median misses the target")
    args = parser.parse_args(argv)

    one, eight = request(ITEMS[5:6]), request(ITEMS)
    assert evaluate([CONSENT], one).items[0].permitted  # the bench measures a real decision
    base_median, base_p99 = summary(timings(trivial, one, args.iterations))
    rows = [("baseline (trivial function)", base_median, base_p99)]
    for label, req in (("evaluate, 1 item", one), ("evaluate, 8 items", eight)):
        rows.append((label, *summary(timings(evaluate, req, args.iterations))))

    print(f"consent decision time, {args.iterations} calls each, Python {sys.version.split()[0]}")
    print(f"{'':30} {'median µs':>10} {'p99 µs':>10} {'median - baseline':>18}")
    for label, median, p99 in rows:
        print(f"{label:30} {median / 1000:10.2f} {p99 / 1000:10.2f} {(median - base_median) / 1000:18.2f}")
    one_item_net = rows[1][1] - base_median
    verdict = "meets" if one_item_net <= TARGET_NS else "MISSES"
    print(f"one-item decision {verdict} the {TARGET_NS / 1000:.0f} µs median target")
    return 1 if args.check and one_item_net > TARGET_NS else 0


if __name__ == "__main__":
    raise SystemExit(main())
