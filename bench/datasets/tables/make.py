"""Write the `tables` dataset: Markdown pages of a made-up cloud ("Nimbus") whose answers sit in
long quota and instance-type tables, with headings that carry anchor tags as exported docs do.

    python bench/datasets/tables/make.py      # rewrites pages/, corpus.jsonl, queries, qrels

Everything here was written for this dataset (no page is copied from anywhere); the figures are
invented. Instance tables are generated from the family and size lists below, quota tables are
typed out. The questions (questions.tsv) were written by hand against the pages.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = [("large", 2, 1), ("xlarge", 4, 2), ("2xlarge", 8, 4), ("4xlarge", 16, 8),
         ("8xlarge", 32, 16), ("12xlarge", 48, 24), ("16xlarge", 64, 32), ("24xlarge", 96, 48)]


def anchor(text: str, name: str) -> str:
    return f'{text}<a name="{name}"></a>'


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def instance_rows(prefix: str, families: list[tuple[str, int, float]], extra) -> list[list]:
    """One row per family and size: memory = vCPU x the family's GiB per vCPU."""
    rows = []
    for family, generation, gib_per_cpu in families:
        for size, cpu, net in SIZES:
            mem = int(cpu * gib_per_cpu)
            rows.append([f"{prefix}{family}{generation}.{size}", cpu, mem, *extra(cpu, mem, net)])
    return rows


PAGES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {}


def page(doc_id: str, title: str, intro: str, sections: list[tuple[str, str, str]]) -> None:
    PAGES[doc_id] = (anchor(title, doc_id.replace("-", "_")), [("", "", intro), *sections])


page("db-instance-classes", "DB instance classes for Nimbus DB",
     "A DB instance class sets the compute and memory capacity of a Nimbus DB instance. Pick a "
     "class by the memory your working set needs; connection limits follow memory.", [
         ("Supported instance classes", "db-classes",
          "The following table lists every DB instance class, its virtual CPUs, memory, network "
          "bandwidth and the default maximum number of client connections.\n\n" + table(
              ["Instance class", "vCPU", "Memory (GiB)", "Network bandwidth (Gbps)",
               "Max connections"],
              instance_rows("db.", [("m", 6, 4), ("r", 6, 8), ("x", 2, 16), ("t", 4, 2)],
                            lambda cpu, mem, net: [net, min(mem * 85, 16000)]))),
         ("Burstable classes", "db-burst",
          "The db.t4 classes earn CPU credits while idle. Sustained use above the baseline "
          "spends credits; when they run out the instance is held at its baseline."),
     ])
page("cache-node-types", "Node types for Nimbus Cache",
     "Nimbus Cache runs in-memory key-value clusters. Each node type fixes the memory available "
     "for keys; the eviction policy decides what happens when that memory is full.", [
         ("Current node types", "cache-nodes",
          "Node types by vCPU, memory, the maximum number of client connections and the "
          "default eviction policy.\n\n" + table(
              ["Node type", "vCPU", "Memory (GiB)", "Max clients", "Default eviction policy"],
              instance_rows("cache.", [("m", 7, 3.25), ("r", 7, 6.5)],
                            lambda cpu, mem, net: [mem * 1000, "allkeys-lru" if cpu < 16
                                                   else "volatile-lru"]))),
     ])
page("compute-instance-types", "Instance types for Nimbus Compute",
     "Instance types combine CPU, memory and local disk. General purpose (g), compute "
     "optimized (c) and memory optimized (r) families are offered in eight sizes.", [
         ("Instance type specifications", "compute-types",
          "Prices are on-demand, per hour, in the eu-north region.\n\n" + table(
              ["Instance type", "vCPU", "Memory (GiB)", "Local NVMe storage (GB)",
               "On-demand price per hour (USD)"],
              instance_rows("", [("g", 7, 4), ("c", 7, 2), ("r", 7, 8)],
                            lambda cpu, mem, net: [cpu * 59, f"{cpu * 0.021 + mem * 0.0047:.3f}"]))),
     ])
page("warehouse-node-types", "Node types for Nimbus Warehouse",
     "A Nimbus Warehouse cluster is a leader node and one or more compute nodes of one type.", [
         ("Compute node types", "wh-nodes",
          "Managed storage per node and the number of slices that split a query.\n\n" + table(
              ["Node type", "vCPU", "Memory (GiB)", "Managed storage per node (TB)", "Slices"],
              instance_rows("wh.", [("ra", 3, 8)], lambda cpu, mem, net: [cpu * 4, cpu // 2]))),
     ])

QUOTA = ["Resource", "Quota code", "Scope", "Default quota", "Maximum", "Adjustable"]
GLOBAL = {"identity-quotas", "dns-quotas"}  # account-wide services; the others are per region


def quota_code(doc_id: str, resource: str) -> str:
    """A made-up quota code, stable per page and row, as quota consoles show them."""
    return "L-" + hashlib.sha256(f"{doc_id}/{resource}".encode()).hexdigest()[:8].upper()
# (doc id, title, intro, [(section title, anchor, lead-in, rows)]); rows: resource, default, max, adjustable
QUOTAS = [
    ("db-quotas", "Quotas in Nimbus DB",
     "Each account has quotas for Nimbus DB resources in each region. Request an increase "
     "from the console's quota page; increases above the maximum are not granted.", [
         ("Account quotas", "db-account", "Quotas counted across the whole account and region.", [
             ["DB instances", 40, 1000, "Yes"], ["DB clusters", 40, 400, "Yes"],
             ["Manual snapshots", 100, 10000, "Yes"], ["Parameter groups", 50, 500, "Yes"],
             ["Option groups", 20, 200, "Yes"], ["Subnet groups", 50, 500, "Yes"],
             ["Event subscriptions", 20, 100, "Yes"], ["Reserved DB instances", 40, 400, "Yes"],
             ["Custom engine versions", 40, 40, "No"], ["Proxies", 20, 100, "Yes"],
             ["Total storage for all DB instances (TiB)", 100, 2048, "Yes"],
             ["Security groups (DB)", 25, 100, "Yes"], ["Authorizations per security group", 20, 20, "No"],
             ["Cross-region automated backups", 20, 60, "Yes"], ["Integrations", 100, 100, "No"]]),
         ("Per-instance limits", "db-instance", "Limits that apply to each DB instance.", [
             ["Read replicas per primary instance", 5, 15, "Yes"],
             ["Tags per resource", 50, 50, "No"],
             ["Storage per instance (TiB)", 64, 64, "No"],
             ["Databases per instance", 100, 100, "No"],
             ["Provisioned IOPS per instance", 80000, 256000, "Yes"],
             ["Automated backup retention (days)", 7, 35, "Yes"],
             ["Maintenance window length (minutes)", 30, 240, "No"]]),
     ]),
    ("compute-quotas", "Quotas in Nimbus Compute",
     "Nimbus Compute quotas are counted in vCPUs per instance family rather than in instances, "
     "so one quota covers every size of a family.", [
         ("vCPU quotas", "compute-vcpu", "Running on-demand instances, in vCPUs.", [
             ["Running on-demand g instances (vCPUs)", 64, 4096, "Yes"],
             ["Running on-demand c instances (vCPUs)", 64, 4096, "Yes"],
             ["Running on-demand r instances (vCPUs)", 32, 2048, "Yes"],
             ["Running spot instances (vCPUs)", 128, 8192, "Yes"],
             ["Running dedicated hosts", 2, 50, "Yes"]]),
         ("Other compute quotas", "compute-other", "Counts per account and region.", [
             ["Elastic IP addresses", 5, 100, "Yes"], ["Key pairs", 5000, 5000, "No"],
             ["Launch templates", 5000, 5000, "No"], ["Placement groups", 500, 500, "No"],
             ["Instances per partition placement group partition", 100, 100, "No"],
             ["Machine images (private)", 1000, 10000, "Yes"],
             ["Block volumes storage (TiB)", 50, 1000, "Yes"],
             ["Volume snapshots", 10000, 100000, "Yes"],
             ["Security groups per network interface", 5, 16, "Yes"],
             ["Rules per security group", 60, 200, "Yes"],
             ["Network interfaces", 5000, 50000, "Yes"],
             ["Scheduled instance actions", 100, 100, "No"]]),
     ]),
    ("storage-limits", "Limits of Nimbus Object Storage",
     "Object Storage limits apply to buckets, objects and requests.", [
         ("Bucket and object limits", "storage-objects", "Sizes are in bytes unless stated.", [
             ["Buckets per account", 100, 1000, "Yes"], ["Object size (TiB)", 5, 5, "No"],
             ["Single PUT upload size (GiB)", 5, 5, "No"], ["Parts per multipart upload", 10000, 10000, "No"],
             ["Minimum part size (MiB)", 5, 5, "No"], ["Lifecycle rules per bucket", 1000, 1000, "No"],
             ["Replication rules per bucket", 1000, 1000, "No"], ["Bucket policy size (KB)", 20, 20, "No"],
             ["Object tags per object", 10, 10, "No"], ["Access points per region", 10000, 10000, "No"],
             ["Event notifications per bucket", 100, 100, "No"],
             ["Inventory configurations per bucket", 1000, 1000, "No"]]),
         ("Request rates", "storage-rates", "Per partitioned prefix, per second.", [
             ["GET and HEAD requests per prefix per second", 5500, 5500, "No"],
             ["PUT, COPY, POST and DELETE requests per prefix per second", 3500, 3500, "No"],
             ["Batch operation jobs (active)", 10000, 10000, "No"]]),
     ]),
    ("queue-limits", "Quotas in Nimbus Queue",
     "Nimbus Queue offers standard and FIFO queues. Message limits apply to both unless noted.", [
         ("Queue quotas", "queue-quotas", "Per account and region.", [
             ["Queues per account", 1000000, 1000000, "No"],
             ["Inflight messages per standard queue", 120000, 120000, "No"],
             ["Inflight messages per FIFO queue", 20000, 20000, "No"],
             ["Message size (KiB)", 256, 256, "No"],
             ["Message retention period (days)", 4, 14, "Yes"],
             ["Visibility timeout (hours)", 0.5, 12, "Yes"],
             ["Delay per message (minutes)", 0, 15, "Yes"],
             ["Messages per batch", 10, 10, "No"],
             ["FIFO transactions per second per API action", 300, 3000, "Yes"],
             ["Long polling wait time (seconds)", 0, 20, "Yes"],
             ["Tags per queue", 50, 50, "No"],
             ["Dead-letter queue redrive attempts", 10, 1000, "Yes"]]),
     ]),
    ("functions-limits", "Quotas in Nimbus Functions",
     "Function quotas cover concurrency, deployment package sizes and execution time.", [
         ("Concurrency and storage", "fn-account", "Per account and region.", [
             ["Concurrent executions", 1000, 50000, "Yes"],
             ["Storage for functions and layers (GB)", 75, 10000, "Yes"],
             ["Elastic network interfaces per VPC", 500, 5000, "Yes"],
             ["Function URL requests per second", 10000, 100000, "Yes"]]),
         ("Function configuration", "fn-config", "Per function; these cannot be raised.", [
             ["Memory (MB)", 128, 10240, "No"], ["Timeout (seconds)", 3, 900, "No"],
             ["Environment variables size (KB)", 4, 4, "No"],
             ["Layers per function", 5, 5, "No"],
             ["Deployment package size zipped (MB)", 50, 50, "No"],
             ["Deployment package size unzipped (MB)", 250, 250, "No"],
             ["Container image size (GB)", 10, 10, "No"],
             ["Ephemeral storage /tmp (MB)", 512, 10240, "No"],
             ["Invocation payload synchronous (MB)", 6, 6, "No"],
             ["Invocation payload asynchronous (KB)", 256, 256, "No"],
             ["File descriptors", 1024, 1024, "No"],
             ["Processes or threads", 1024, 1024, "No"]]),
     ]),
    ("network-quotas", "Quotas in Nimbus Virtual Network",
     "Virtual network quotas cover networks, subnets, gateways and route tables.", [
         ("Network quotas", "vnet", "Per account and region.", [
             ["Virtual networks per region", 5, 100, "Yes"], ["Subnets per network", 200, 1000, "Yes"],
             ["IPv4 CIDR blocks per network", 5, 50, "Yes"], ["Internet gateways per region", 5, 100, "Yes"],
             ["NAT gateways per availability zone", 5, 50, "Yes"],
             ["Route tables per network", 200, 1000, "Yes"], ["Routes per route table", 50, 1000, "Yes"],
             ["Peering connections per network", 50, 125, "Yes"],
             ["Network ACLs per network", 200, 200, "No"], ["Rules per network ACL", 20, 40, "Yes"],
             ["VPN connections per region", 50, 100, "Yes"], ["Endpoints per network", 50, 255, "Yes"],
             ["Flow logs per network interface", 2, 2, "No"], ["Transit gateway attachments", 5000, 5000, "No"]]),
     ]),
    ("dns-quotas", "Quotas in Nimbus DNS",
     "Nimbus DNS hosts public and private zones. Record counts are per zone.", [
         ("Zone and record quotas", "dns", "Per account unless stated.", [
             ["Hosted zones", 500, 10000, "Yes"], ["Records per hosted zone", 10000, 1000000, "Yes"],
             ["Health checks", 200, 2000, "Yes"], ["Traffic policies", 50, 500, "Yes"],
             ["Traffic policy versions", 1000, 1000, "No"],
             ["Networks associated with a private zone", 300, 1000, "Yes"],
             ["Values per weighted record", 100, 100, "No"], ["Reusable delegation sets", 100, 100, "No"],
             ["Query logging configurations", 1, 1, "No"],
             ["Resolver rules per region", 1000, 1000, "No"], ["Resolver endpoints per region", 4, 16, "Yes"],
             ["DNS queries per second per network interface", 1024, 1024, "No"]]),
     ]),
    ("identity-quotas", "Quotas in Nimbus Identity",
     "Identity quotas limit users, groups, roles and policies. Most are account-wide.", [
         ("Entity quotas", "iam-entities", "Per account.", [
             ["Users", 5000, 5000, "No"], ["Groups", 300, 500, "Yes"], ["Roles", 1000, 5000, "Yes"],
             ["Customer managed policies", 1500, 5000, "Yes"], ["Instance profiles", 1000, 5000, "Yes"],
             ["Identity providers (SAML)", 100, 100, "No"], ["Server certificates", 20, 1000, "Yes"],
             ["Groups a user can belong to", 10, 10, "No"], ["Managed policies per role", 10, 20, "Yes"],
             ["Managed policies per user", 10, 20, "Yes"], ["Access keys per user", 2, 2, "No"],
             ["MFA devices per user", 8, 8, "No"], ["Policy document size (characters)", 6144, 6144, "No"],
             ["Role session duration (hours)", 1, 12, "Yes"], ["Role trust policy length (characters)", 2048, 4096, "Yes"]]),
     ]),
    ("monitoring-quotas", "Quotas in Nimbus Monitoring",
     "Monitoring quotas apply to metrics, alarms, dashboards and log ingestion.", [
         ("Metrics and alarms", "mon-metrics", "Per account and region.", [
             ["Alarms per region", 5000, 100000, "Yes"], ["Dashboards per account", 5000, 5000, "No"],
             ["Metrics per dashboard widget", 500, 500, "No"], ["Custom metrics put per second", 500, 10000, "Yes"],
             ["Dimensions per metric", 30, 30, "No"], ["Metric data retention (months)", 15, 15, "No"],
             ["Anomaly detection models", 500, 5000, "Yes"]]),
         ("Logs", "mon-logs", "Log ingestion limits.", [
             ["Log groups per region", 1000000, 1000000, "No"], ["Log event size (KB)", 256, 256, "No"],
             ["Ingestion rate per log stream (MB/s)", 5, 5, "No"], ["Subscription filters per log group", 2, 2, "No"],
             ["Metric filters per log group", 100, 100, "No"], ["Concurrent log queries", 30, 100, "Yes"],
             ["Log query result rows", 10000, 10000, "No"]]),
     ]),
    ("kubernetes-quotas", "Quotas in Nimbus Kubernetes Service",
     "Cluster quotas for the managed Kubernetes service; node limits depend on the node type.", [
         ("Cluster quotas", "k8s", "Per account and region unless stated.", [
             ["Clusters per region", 100, 500, "Yes"], ["Managed node groups per cluster", 30, 100, "Yes"],
             ["Nodes per managed node group", 450, 1000, "Yes"], ["Nodes per cluster", 1000, 5000, "Yes"],
             ["Pods per node (default networking)", 110, 250, "Yes"], ["Fargate profiles per cluster", 10, 20, "Yes"],
             ["Selectors per Fargate profile", 5, 5, "No"], ["Labels per node group", 50, 50, "No"],
             ["Add-ons per cluster", 25, 25, "No"], ["Control plane log types", 5, 5, "No"],
             ["Public endpoint CIDR ranges", 40, 40, "No"], ["Supported Kubernetes versions at once", 4, 4, "No"]]),
     ]),
    ("backup-quotas", "Quotas in Nimbus Backup",
     "Backup vaults store recovery points; plans schedule them.", [
         ("Backup quotas", "backup", "Per account and region.", [
             ["Backup vaults", 100, 1000, "Yes"], ["Backup plans", 100, 500, "Yes"],
             ["Rules per backup plan", 250, 250, "No"], ["Resource assignments per plan", 30, 30, "No"],
             ["Recovery points per vault", 100000, 100000, "No"], ["Concurrent backup jobs", 100, 500, "Yes"],
             ["Concurrent restore jobs", 20, 100, "Yes"], ["Cross-region copy jobs", 100, 1000, "Yes"],
             ["Minimum backup frequency (hours)", 1, 1, "No"], ["Maximum retention (years)", 100, 100, "No"],
             ["Legal holds per account", 50, 500, "Yes"], ["Report plans", 20, 20, "No"]]),
     ]),
    ("notify-quotas", "Quotas in Nimbus Notifications",
     "Topics fan messages out to subscriptions: queues, functions, HTTP endpoints, e-mail, SMS.", [
         ("Topic and delivery quotas", "notify", "Per account and region.", [
             ["Standard topics", 100000, 100000, "No"], ["FIFO topics", 1000, 1000, "No"],
             ["Subscriptions per standard topic", 12500000, 12500000, "No"],
             ["Subscriptions per FIFO topic", 100, 100, "No"], ["Message size (KiB)", 256, 256, "No"],
             ["Publish requests per second (standard)", 30000, 300000, "Yes"],
             ["SMS messages per second", 20, 200, "Yes"], ["SMS monthly spend (USD)", 1, 100000, "Yes"],
             ["E-mail deliveries per second", 10, 10, "No"], ["Filter policies per topic", 200, 10000, "Yes"],
             ["Attributes per filter policy", 5, 5, "No"], ["Delivery retries for HTTP endpoints", 50, 100, "No"]]),
     ]),
]
for doc_id, title, intro, sections in QUOTAS:
    scope = "Global" if doc_id in GLOBAL else "Regional"
    page(doc_id, title, intro, [
        (name, key, f"{lead}\n\n" + table(QUOTA, [[r[0], quota_code(doc_id, r[0]), scope, *r[1:]]
                                                   for r in rows]))
        for name, key, lead, rows in sections])


def markdown(doc_id: str) -> str:
    title, sections = PAGES[doc_id]
    parts = [f"# {title}"]
    for name, key, body in sections:
        if name:
            parts.append(f"## {anchor(name, key)}")
        parts.append(body)
    return "\n\n".join(parts) + "\n"


def main() -> None:
    (HERE / "pages").mkdir(exist_ok=True)
    (HERE / "qrels").mkdir(exist_ok=True)
    with open(HERE / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for doc_id in PAGES:
            text = markdown(doc_id)
            (HERE / "pages" / f"{doc_id}.md").write_text(text, encoding="utf-8")
            title_line, body = text.split("\n", 1)
            # As exported docs give it: the page's raw H1 (anchor tag and all) as its title.
            corpus.write(json.dumps({"_id": doc_id, "title": title_line[2:],
                                     "text": body.strip("\n")}) + "\n")
    questions = [line.split("\t") for line in
                 (HERE / "questions.tsv").read_text(encoding="utf-8").splitlines()[1:] if line]
    with open(HERE / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, doc_id, text in questions:
            assert doc_id in PAGES, f"question {qid}: no page {doc_id}"
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (HERE / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d, _ in questions))
    print(f"{len(PAGES)} pages, {len(questions)} questions")


if __name__ == "__main__":
    main()
