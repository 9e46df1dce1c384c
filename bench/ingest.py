"""Benchmark the campaign CSV ingest end to end.

Generates a CSV of `--rows` contacts (default 1,000,000; 10% invalid numbers, 5% repeated
numbers, mixed national formats; `--invalid digits` makes the invalid tenth runs of 5 to 12
random digits, as truncated or padded exports give, each one different, instead of a few
recurring strings such as `n/a` and `555-0143`) and a 10,000-number DNC list, creates and migrates a
scratch database (`dialer_bench`, dropped first), then prints:

- ingest rows per second, end to end (open, parse, normalise, COPY, commit), run in a
  child process; target >= 50,000 rows/s;
- the ingest's CPU seconds per 100,000 rows (user + system time of the child process over
  the same span; unlike rows/s, it does not depend on what else the machine runs), and
  those of the PostgreSQL backend serving it (its COPY, index and foreign-key work) when
  the server runs on this machine (read from /proc, Linux);
- the child's peak RSS (the ingest's high-water mark, imports included); target <= 300 MB;
- the ratio of the ingest's time to, in the same run, a bare `psql \\copy` of the same file
  into an unconstrained table, and to a bare `phonenumbers` parse-validate-format loop over
  the file's numbers (the cost of doing nothing but normalising the numbers naively).

Usage: python -m bench.ingest [--rows N] [--invalid {mixed,digits}]
                              [--server postgresql+psycopg://root@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import phonenumbers
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench import cpu_seconds, scratch_database
from dialer import numbers

DATABASE = "dialer_bench"
DNC_SIZE = 10_000
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Perlman")
CLINICS = ("Midtown Dental", "Harbor Eye Care", "Northside Physio", "Elm St. Pediatrics")
INVALID = ("555-0143", "n/a", "123 456 7890", "(099) 555-0143", "+1 999 555 0143", "0", "")


def _valid_prefixes(rng: random.Random, count: int) -> list[str]:
    """NANP area code + exchange prefixes whose numbers are valid, non-premium US ones."""
    prefixes: list[str] = []
    while len(prefixes) < count:
        prefix = f"{rng.randint(200, 999)}{rng.randint(200, 999)}"
        try:
            info = numbers.classify(f"+1{prefix}0100", "US")
        except numbers.NumberRejected:
            continue
        if info.region == "US" and not info.premium:
            prefixes.append(prefix)
    return prefixes


def _formatted(nsn: str, style: int) -> str:
    area, exchange, line = nsn[:3], nsn[3:6], nsn[6:]
    return (
        f"({area}) {exchange}-{line}",
        f"{area}.{exchange}.{line}",
        f"+1 {area} {exchange} {line}",
        nsn,
        f"1-{area}-{exchange}-{line}",
        f"+1{nsn}",
    )[style]


def _digit_run(rng: random.Random) -> str:
    length = rng.randint(5, 12)
    return str(rng.randrange(10 ** (length - 1), 10**length))


def generate(path: Path, rows: int, seed: int = 7, invalid: str = "mixed") -> list[str]:
    """Write the contact CSV to `path`; returns the DNC list (E.164). `invalid` is `mixed`
    (a few recurring bad strings) or `digits` (random digit runs, see the module)."""
    rng = random.Random(seed)
    prefixes = _valid_prefixes(rng, 400)
    issued: list[str] = []
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["first_name", "last_name", "phone", "appointment_time", "clinic"])
        for index in range(rows):
            draw = rng.random()
            if draw < 0.10:
                phone = rng.choice(INVALID) if invalid == "mixed" else _digit_run(rng)
            elif draw < 0.15 and issued:
                phone = _formatted(rng.choice(issued), rng.randrange(6))
            else:
                nsn = f"{prefixes[index % len(prefixes)]}{index // len(prefixes):04d}"
                issued.append(nsn)
                phone = _formatted(nsn, rng.randrange(6))
            writer.writerow(
                [
                    rng.choice(FIRST_NAMES),
                    rng.choice(LAST_NAMES),
                    phone,
                    f"2026-0{rng.randint(1, 9)}-{rng.randint(10, 28)} {rng.randint(8, 17)}:30",
                    rng.choice(CLINICS),
                ]
            )
    return ["+1" + nsn for nsn in rng.sample(issued, min(DNC_SIZE, len(issued)))]


def child(url: str, csv_path: str, dnc_path: str) -> None:
    """Run one ingest (in its own process, for a clean RSS high-water mark); print JSON."""
    from campaigns import dnc
    from campaigns.ingest import ingest_contacts
    from models import Account, CallerId, Campaign, transaction

    with transaction(url) as session:
        account = Account(name="bench", max_concurrency=10, cps=10.0)
        session.add(account)
        session.flush()
        dnc.add(session, account.id, json.loads(Path(dnc_path).read_text()), "US")
    started = time.perf_counter()
    cpu_started = cpu_seconds([os.getpid()])
    with transaction(url) as session, open(csv_path, "rb") as source:
        backend = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        server_started = cpu_seconds([backend])
        caller_id = CallerId(account_id=account.id, e164="+15005550006")
        session.add(caller_id)
        session.flush()
        campaign = Campaign(
            account_id=account.id, caller_id_id=caller_id.id, name="bench", message="Hi."
        )
        session.add(campaign)
        session.flush()
        summary = ingest_contacts(session, campaign, source)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds([os.getpid()]) - cpu_started
    server = cpu_seconds([backend]) - server_started  # 0 when the server is not on this machine
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "server_cpu_seconds": server,
        "peak_mb": peak_kib / 1024,
    }
    print(json.dumps(figures | summary.to_json()))


def bare_psql_copy(url: str, csv_path: Path) -> float:
    """Seconds for `psql \\copy` of the file into a table without constraints."""
    target = make_url(url)
    dsn = f"postgresql://{target.username}@{target.host}:{target.port}/{target.database}"
    subprocess.run(
        ["psql", dsn, "-qc", "CREATE UNLOGGED TABLE IF NOT EXISTS bare_contacts "
         "(first_name text, last_name text, phone text, appointment_time text, clinic text)"],
        check=True,
    )  # fmt: skip
    started = time.perf_counter()
    subprocess.run(
        ["psql", dsn, "-qc", f"\\copy bare_contacts FROM '{csv_path}' WITH (FORMAT csv, HEADER)"],
        check=True,
    )
    return time.perf_counter() - started


def bare_phonenumbers(csv_path: Path) -> float:
    """Seconds for a plain parse, validate, format loop over the file's phone column."""
    with csv_path.open(newline="", encoding="utf-8") as file:
        raws = [row[2] for row in csv.reader(file)][1:]
    started = time.perf_counter()
    for raw in raws:
        try:
            parsed = phonenumbers.parse(raw, "US")
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--invalid", choices=("mixed", "digits"), default="mixed")
    parser.add_argument("--server", default="postgresql+psycopg://root@127.0.0.1:5432")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    url = f"{args.server}/{DATABASE}"
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "contacts.csv"
        dnc_path = Path(tmp) / "dnc.json"
        started = time.perf_counter()
        dnc_list = generate(csv_path, args.rows, invalid=args.invalid)
        dnc_path.write_text(json.dumps(dnc_list))
        size_mb = csv_path.stat().st_size / 1e6
        generated_s = time.perf_counter() - started
        print(f"generated {args.rows:,} rows ({size_mb:.0f} MB) in {generated_s:.1f} s")
        scratch_database(args.server, DATABASE)

        result = subprocess.run(
            [sys.executable, "-m", "bench.ingest", "--child", url, str(csv_path), str(dnc_path)],
            check=True,
            capture_output=True,
            text=True,
        )
        report = json.loads(result.stdout.strip().splitlines()[-1])
        psql_s = bare_psql_copy(url, csv_path)
        phonenumbers_s = bare_phonenumbers(csv_path)

    seconds = report["seconds"]
    rate = report["rows"] / seconds
    print(f"ingest: {report['rows']:,} rows in {seconds:.2f} s = {rate:,.0f} rows/s (>= 50,000)")
    print(f"  accepted {report['accepted']:,}, rejected {report['rejected']}")
    per_100k = 100_000 / report["rows"]
    print(f"  CPU {report['cpu_seconds'] * per_100k:.2f} s per 100,000 rows", end="")
    if report["server_cpu_seconds"]:
        print(f"; PostgreSQL backend {report['server_cpu_seconds'] * per_100k:.2f} s", end="")
    print()
    print(f"  peak RSS {report['peak_mb']:.0f} MB (target <= 300)")
    print(f"bare psql \\copy: {psql_s:.2f} s; ingest / psql = {seconds / psql_s:.1f}x")
    print(f"bare phonenumbers loop: {phonenumbers_s:.2f} s; ingest / phonenumbers = "
          f"{seconds / phonenumbers_s:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
