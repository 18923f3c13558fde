"""Write the deploy files made from others, or with --check say which are out of date.

- deploy/kubernetes/base/prometheusrule.yaml: the rules of deploy/prometheus/alerts.yml as a
  Prometheus Operator PrometheusRule.
- deploy/grafana/simple-time-service.json: the dashboard of deploy/grafana/panels.py.

    .venv/bin/python deploy/generate.py [--check]

Needs PyYAML and grafana-foundation-sdk (both in the dev dependencies: ./install.sh --dev).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
RULE = DEPLOY / "kubernetes" / "base" / "prometheusrule.yaml"
GRAFANA = DEPLOY / "grafana" / "simple-time-service.json"
MADE_BY = "# Made by deploy/generate.py from {source}: edit that, then run it.\n"


def prometheus_rule() -> str:
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "simple-time-service",
                         "labels": {"app.kubernetes.io/name": "simple-time-service"}},
            "spec": {"groups": yaml.safe_load(ALERTS.read_text())["groups"]}}
    text = yaml.safe_dump(rule, sort_keys=False, width=100, allow_unicode=True)
    return MADE_BY.format(source="deploy/prometheus/alerts.yml") + text


def grafana_dashboard() -> str:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    # Loaded by path under its own name: "dashboard" is also the Textual dashboard's package.
    spec = importlib.util.spec_from_file_location("grafana_panels", DEPLOY / "grafana" / "panels.py")
    panels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(panels)
    return JSONEncoder(sort_keys=True, indent=2).encode(panels.build().build()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in ((RULE, prometheus_rule()), (GRAFANA, grafana_dashboard())):
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.relative_to(DEPLOY.parent))
        if not args.check:
            path.write_text(text)
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
