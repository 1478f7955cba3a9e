"""Synthetic department exports for connector tests and benchmarks (a 12345-style ticket export)."""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

COLUMNS = [
    "工单编号",
    "诉求分类",
    "标题",
    "诉求内容",
    "承办单位",
    "受理时间",
    "派单时间",
    "办结时间",
    "办理时限",
    "状态",
    "紧急程度",
    "经度",
    "纬度",
    "地址",
]
AGENCIES = ["区城管局", "区住建局", "区生态环境局", "区交通运输局", "区市场监管局", "街道办"]
STATUSES = ["已办结"] * 6 + ["办理中", "已派单", "已受理", "不予受理"]
EVENTS_BY_STATUS = {"已办结": 8, "办理中": 5, "已派单": 4, "已受理": 3, "不予受理": 2}
"""Canonical events per valid row: report, register, dispatch, accept, handle, verify, close."""
FMT = "%Y-%m-%d %H:%M:%S"


def write_12345_export(path: Path, rows: int, seed: int = 1, bad_every: int = 0) -> dict[str, int]:
    """Write the export; returns {"valid": n, "invalid": n, "events": n} (expected canonical events)."""
    rnd = random.Random(seed)
    t0 = datetime(2025, 1, 1, 8)
    stats = {"valid": 0, "invalid": 0, "events": 0}
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for i in range(rows):
            reported = t0 + timedelta(minutes=5 * i + rnd.randint(0, 4))
            dispatched = reported + timedelta(minutes=rnd.randint(5, 120))
            status = rnd.choice(STATUSES)
            closed = dispatched + timedelta(hours=rnd.expovariate(1 / 30)) if status == "已办结" else None
            row = [
                f"GD{i:08d}",
                rnd.choice(["市容环境", "噪声扰民", "道路破损", "占道经营"]),
                "",
                f"市民反映问题{i}",
                rnd.choice(AGENCIES),
                reported.strftime(FMT),
                dispatched.strftime(FMT) if status != "已受理" else "",
                closed.strftime(FMT) if closed else "",
                (reported + timedelta(days=3)).strftime(FMT),
                status,
                rnd.choice(["一般", "一般", "紧急"]),
                f"{118.66 + rnd.random() * 0.12:.6f}",
                f"{31.96 + rnd.random() * 0.1:.6f}",
                "建邺区某路",
            ]
            if bad_every and i % bad_every == 7:
                row[5] = "not-a-date" if i % 2 else row[5]
                row[9] = row[9] if i % 2 else "未知状态"
                stats["invalid"] += 1
            else:
                stats["valid"] += 1
                stats["events"] += EVENTS_BY_STATUS[status]
            writer.writerow(row)
    return stats
