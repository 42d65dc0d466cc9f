"""Benchmark: import a generated 100,000-item 1C catalog into a fresh cloud database through
`cloud_sync.onec.importer.import_files`. The catalog is shaped like a real УТ/УНФ export: 200 groups,
items with an article, a barcode, a group, a base unit, two properties (one a free string, one a
reference to a value list) and requisites; offers with two price types (retail with a decimal comma,
cost) and stock in 1 to 3 of three warehouses (attribute style, with the stated total).

Each measurement runs in its own child process so its peak RSS (resource.getrusage ru_maxrss, the
whole process: interpreter, SQLite cache, everything) is its own:
  baseline  — the child imports the modules and opens the database, nothing more (the floor);
  floor     — the parse-only floor: the same XML parser the importer uses (the standard library's expat
              with its C TreeBuilder, fed in the same 64 KB chunks, finished elements freed as they come)
              reading both files and doing nothing else — no record built, no database; the import's
              speed is also given as a share of it (`ratio_to_floor`);
  parse     — the parser alone over both files (records built, no database);
  lxml      — for comparison where lxml is installed: its iterparse (safe settings) reading the same files,
              alone (its floor) and with the importer's own record building over its elements; the
              importer keeps expat: lxml's floor is lower, but building records from its elements (a Python
              proxy object per element touched) costs more than the parse saves;
  single    — the full import on the single-process path (parse and write in turn), the baseline;
  import    — the full import as `import_files` chooses for files this size: the catalog file and
              the offers file are parsed at once by two child processes while this one writes (both
              files in one transaction: nomenclature, prices, 1C balances and the stock ledger) — the
              figure of the last line;
  reimport  — the same package a second time into that database (1C re-sending its full catalog);
  write     — the write-only floor: the rows the median pipeline import wrote (read back from its database:
              every table that gained rows, every column) inserted into a fresh database migrated by the
              project's own `open_db` (the same tables, indexes, triggers and foreign keys) as bare
              `executemany` INSERTs in one transaction, nothing else (no parse, no lookup, no upsert, no
              ledger logic; the items table's search trigger fires per row as it does in the import, its
              time shown per table); the connection as the import sets it up (`importer._import_settings`: page
              cache, temp store, GC). Timed from BEGIN to COMMIT, the rows already in memory.
The ceiling: with the two files parsed by two children on the 2 cores and the writing in this one process,
no schedule beats wall >= max(write floor's wall, the slowest file's parse (one child reads a file from
start to end), (parse CPU + write CPU) / cores); the items divided by that bound is the best the import could reach
with the importer's parser as it is, and with the parse-only floor in its place (record building free).
Both are optimistic: handing the batches between the processes (encode, pipe, decode) is not counted.
`--rounds N` alternates single/import N times (the machine is shared: compare neighbours) and gives
each; the last line takes the median round of the pipeline.
CPU is the process's AND its children's (user + system); the peak of a pipeline run is the importing
process's peak PLUS each parser child's own peak (each a fresh interpreter; a conservative sum: the
peaks need not coincide).
On Linux the import's own resident peak is also shown (the peak is reset after the database is open):
the whole process's peak is set before the import, by importing the modules (cloud_sync.access.users hashes
a dummy argon2 password at import time, ~65 MB for a moment).
Targets (issue 19): >= 50,000 items/s on a quiet box and peak <= 200 MB. Last line:
`items_per_s=X peak_mb=Y floor_items_per_s=Z ratio_to_floor=R write_floor_items_per_s=W ceiling_items_per_s=C`
(wall clock; the last two fields appended after the first four, which keep their places). The machine is shared, so each figure is also given per CPU-second of the process (user + system
time, what the import itself costs), with the load average at the time: read both.

    .venv/bin/python bench/onec_import.py [--items 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<КоммерческаяИнформация xmlns="urn:1C.ru:commerceml_2" ВерсияСхемы="2.08">\n'


def generate(folder: Path, n: int) -> list[Path]:
    groups = 200
    imp, off = folder / "import.xml", folder / "offers.xml"
    with open(imp, "w", encoding="utf-8") as f:
        f.write("\ufeff" + HEAD + "<Классификатор><Ид>cls</Ид><Наименование>Каталог</Наименование><Группы>\n")
        for g in range(groups):
            f.write(f"<Группа><Ид>grp-{g}</Ид><Наименование>Группа {g}</Наименование></Группа>\n")
        f.write("</Группы><Свойства><Свойство><Ид>p-color</Ид><Наименование>Цвет</Наименование>"
                "<ТипЗначений>Строка</ТипЗначений></Свойство>"
                "<Свойство><Ид>p-size</Ид><Наименование>Размер</Наименование><ТипЗначений>Справочник</ТипЗначений>"
                "<ВариантыЗначений>" + "".join(
                    f"<Справочник><ИдЗначения>sz-{k}</ИдЗначения><Значение>{k}</Значение></Справочник>"
                    for k in ("S", "M", "L", "XL")) + "</ВариантыЗначений></Свойство></Свойства></Классификатор>\n"
                '<Каталог СодержитТолькоИзменения="false"><Ид>cat</Ид><Товары>\n')
        for i in range(n):
            f.write(f"<Товар><Ид>{i:08d}-0000-4000-8000-000000000000</Ид><Штрихкод>{4600000000000 + i}</Штрихкод>"
                    f"<Артикул>ART-{i}</Артикул><Наименование>Товар номер {i}, синий</Наименование>"
                    '<БазоваяЕдиница Код="796" НаименованиеПолное="Штука" МеждународноеСокращение="PCE"/>'
                    f"<Группы><Ид>grp-{i % groups}</Ид></Группы><Описание/>"
                    "<ЗначенияСвойств><ЗначенияСвойства><Ид>p-color</Ид><Значение>синий</Значение>"
                    f"</ЗначенияСвойства><ЗначенияСвойства><Ид>p-size</Ид><Значение>sz-{('S', 'M', 'L', 'XL')[i % 4]}"
                    "</Значение></ЗначенияСвойства></ЗначенияСвойств><ЗначенияРеквизитов><ЗначениеРеквизита>"
                    "<Наименование>ВидНоменклатуры</Наименование><Значение>Товар</Значение></ЗначениеРеквизита>"
                    "</ЗначенияРеквизитов></Товар>\n")
        f.write("</Товары></Каталог></КоммерческаяИнформация>\n")
    with open(off, "w", encoding="utf-8") as f:
        f.write("\ufeff" + HEAD + '<ПакетПредложений СодержитТолькоИзменения="false"><Ид>cat#</Ид><ТипыЦен>'
                "<ТипЦены><Ид>pt-retail</Ид><Наименование>Розничная</Наименование><Валюта>RUB</Валюта></ТипЦены>"
                "<ТипЦены><Ид>pt-cost</Ид><Наименование>Себестоимость</Наименование><Валюта>RUB</Валюта></ТипЦены>"
                "</ТипыЦен><Склады><Склад><Ид>wh-1</Ид><Наименование>Москва</Наименование></Склад>"
                "<Склад><Ид>wh-2</Ид><Наименование>Казань</Наименование></Склад>"
                "<Склад><Ид>wh-3</Ид><Наименование>Екатеринбург</Наименование></Склад></Склады><Предложения>\n")
        for i in range(n):
            stock = [(w, (i * (w + 3)) % (7 + 5 * w)) for w in range(1, 2 + i % 3)]  # 1 to 3 warehouses
            f.write(f"<Предложение><Ид>{i:08d}-0000-4000-8000-000000000000</Ид><Цены>"
                    f"<Цена><ИдТипаЦены>pt-retail</ИдТипаЦены><ЦенаЗаЕдиницу>{100 + i % 900},50</ЦенаЗаЕдиницу>"
                    "<Валюта>RUB</Валюта></Цена>"
                    f"<Цена><ИдТипаЦены>pt-cost</ИдТипаЦены><ЦенаЗаЕдиницу>{50 + i % 400}</ЦенаЗаЕдиницу>"
                    f"<Валюта>RUB</Валюта></Цена></Цены><Количество>{sum(q for _, q in stock)}</Количество>"
                    + "".join(f'<Склад ИдСклада="wh-{w}" КоличествоНаСкладе="{q}"/>' for w, q in stock)
                    + "</Предложение>\n")
        f.write("</Предложения></ПакетПредложений></КоммерческаяИнформация>\n")
    return [imp, off]


def _vm_hwm_mb() -> float | None:
    """The process's resident peak (VmHWM) in MB, Linux only; None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return None


def _reset_hwm() -> bool:
    """Start the resident peak afresh from here (Linux: clear_refs 5), so the import's own peak shows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def read_floor(path: str) -> int:
    """Read one file with the importer's XML parser and nothing else (the parse-only floor): expat + the C
    TreeBuilder fed in the parser's chunks, each element freed once finished. Returns the elements read."""
    from xml.etree.ElementTree import Element, TreeBuilder, XMLParser

    from cloud_sync.onec.parser import CHUNK

    parser = XMLParser(target=TreeBuilder())
    started: list[tuple[str, Element]] = []
    parser._setevents(started, ("start",))  # as the parser does: only to learn the root
    root: Element | None = None
    freed = 0

    def free(el: Element) -> None:  # every child but the last (the only one that may still be open)
        nonlocal freed
        while len(el):
            if len(el) > 1:
                freed += len(el) - 1
                del el[:-1]
            el = el[-1]

    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            parser.feed(chunk)
            if root is None and started:
                root = started[0][1]
                parser._setevents(started, ())
            if root is not None:
                free(root)
    parser.close()
    return freed


def read_lxml(path: str, records: bool) -> int:
    """lxml (libxml2) as the importer's reader would use it, for comparison only (the importer reads with
    expat): `iterparse` with the C-level tag filter handing out only items and offers, each cleared and its
    finished siblings dropped, on a parser as safe as the importer's (no entity resolved, no network, no
    huge tree, no DTD loaded). `records`: also build the records with the importer's own code
    (`_Reader.item` / `_Reader.offer` over lxml's elements). Returns the records read."""
    from lxml import etree  # optional: only when installed, for this comparison

    from cloud_sync.onec.parser import _Reader

    reader = _Reader(os.path.basename(path))
    n = 0
    with open(path, "rb") as f:
        for _, el in etree.iterparse(f, events=("end",), tag=("{*}Товар", "{*}Предложение"),
                                     resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False):
            if records:
                reader.item(el) if el.tag.endswith("Товар") else reader.offer(el)  # type: ignore[arg-type]
            el.clear(keep_tail=True)
            parent = el.getparent()
            while el.getprevious() is not None:
                del parent[0]
            n += 1
    return n


def written_rows(conn: sqlite3.Connection, source: str) -> list[tuple[str, str, list[tuple]]]:
    """The rows an import wrote: every table of `source` (a database a full import wrote into, fresh before)
    that holds more rows than the same table of `conn` (fresh from the migrations, where it must be empty),
    all its columns, parents before the tables whose foreign keys name them. (table, INSERT, rows) each."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        count = 'SELECT COUNT(*) FROM "{}"'
        tables = [t for t in names if src.execute(count.format(t)).fetchone()[0] > conn.execute(count.format(t)).fetchone()[0]]
        for t in tables:
            assert not conn.execute(count.format(t)).fetchone()[0], f"{t}: rows in a fresh database"
        parents = {t: {r[2] for r in conn.execute(f'PRAGMA foreign_key_list("{t}")')} & set(tables) - {t}
                   for t in tables}
        ordered: list[str] = []
        while len(ordered) < len(tables):  # parents first (the schema has no foreign-key cycle)
            ordered += [t for t in tables if t not in ordered and parents[t] <= set(ordered)]
        out = []
        for t in ordered:
            cols = ", ".join(f'"{r[1]}"' for r in conn.execute(f'PRAGMA table_info("{t}")'))
            rows = src.execute(f'SELECT {cols} FROM "{t}"').fetchall()
            out.append((t, f'INSERT INTO "{t}"({cols}) VALUES ({", ".join("?" * len(rows[0]))})', rows))
        return out
    finally:
        src.close()


def child(kind: str, db: str, files: list[str]) -> None:
    # lazy: the child process measures its own peak memory, the import's modules included
    from cloud_sync.db import transaction
    from cloud_sync.onec.importer import _import_settings, import_files
    from cloud_sync.onec.parser import parse
    from cloud_sync.schema import open_db

    t0 = time.perf_counter()
    ru0 = _cpu()
    out: dict = {}
    if kind == "baseline":
        open_db(db).close()
    elif kind == "floor":
        out["file_seconds"] = []
        for f in files:  # each file's own time: in the pipeline one child reads one file
            t = time.perf_counter()
            out["elements"] = out.get("elements", 0) + read_floor(f)
            out["file_seconds"].append(time.perf_counter() - t)
    elif kind in ("lxml_floor", "lxml_parse"):
        out["records"] = sum(read_lxml(f, kind == "lxml_parse") for f in files)
    elif kind == "parse":
        out["file_seconds"] = []
        for f in files:
            t = time.perf_counter()
            out["records"] = out.get("records", 0) + sum(1 for _ in parse(f))
            out["file_seconds"].append(time.perf_counter() - t)
    elif kind == "write":  # files: the database a full import wrote (the rows' source)
        conn = open_db(db)
        tables = written_rows(conn, files[0])
        out["rows"] = {t: len(rows) for t, _, rows in tables}
        with _import_settings(conn):
            t0 = time.perf_counter()  # the rows are in memory: from here on only the writing counts
            ru0 = _cpu()
            out["table_seconds"] = {}
            with transaction(conn):
                for t, sql, rows in tables:
                    t1 = time.perf_counter()
                    conn.executemany(sql, rows)
                    out["table_seconds"][t] = time.perf_counter() - t1
            out["seconds"] = time.perf_counter() - t0
            out["cpu_seconds"] = _cpu() - ru0
        conn.close()
    else:
        conn = open_db(db)
        out["rss_before_mb"] = _vm_hwm_mb()  # the peak so far: modules (cloud_sync.access.users hashes at import)
        reset = _reset_hwm()
        r = import_files(conn, files, details=False, two_process=False if kind == "single" else None)
        out["own_peak_mb"] = _vm_hwm_mb() if reset else None
        out.update(items=r.items, offers=r.offers, barcodes=len(r.barcodes), warnings=r.warnings,
                   children_mb=r.children_peak_mb)
        if kind == "reimport":  # the same package again (1C re-sends its full catalog): the second run counts
            t0 = time.perf_counter()
            ru0 = _cpu()
            r = import_files(conn, files, details=False)
        out["stock_levels"] = conn.execute("SELECT COUNT(*) FROM stock_levels").fetchone()[0]
        out["moves"] = conn.execute("SELECT COUNT(*) FROM stock_moves").fetchone()[0]
        conn.close()
    out.setdefault("seconds", time.perf_counter() - t0)
    out.setdefault("cpu_seconds", _cpu() - ru0)
    # the whole process's peak: a reset of the resident peak (above) also resets ru_maxrss on Linux
    out["peak_mb"] = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, out.get("rss_before_mb") or 0)
    # the parser children's peaks, each as the child measured its own, summed (ru_maxrss of
    # RUSAGE_CHILDREN would give only the largest); 0 without a child
    out["child_peak_mb"] = out.pop("children_mb", 0.0)
    out["peak_mb"] += out["child_peak_mb"]
    out["load"] = os.getloadavg()[0]
    print(json.dumps(out))


def _cpu() -> float:
    """User + system CPU seconds of this process and of its finished children (the parser children)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_child(kind: str, db: Path, files: list[Path]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--db", str(db), *map(str, files)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rates(items: int, m: dict) -> str:
    return (f"{items / m['seconds']:,.0f} items/s wall ({m['seconds']:.2f}s), {items / m['cpu_seconds']:,.0f} items "
            f"per CPU-second ({m['cpu_seconds']:.2f}s CPU); load average {m['load']:.1f} on {os.cpu_count()} cores")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child")
    ap.add_argument("--db")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.db, args.files)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        files = generate(folder, args.items)
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"generated {args.items} items + offers: {size_mb:.1f} MB in {time.perf_counter() - t0:.1f}s")
        base = run_child("baseline", folder / "base.db", files)
        print(f"baseline (modules + empty database): peak {base['peak_mb']:.1f} MB")
        floor = run_child("floor", folder / "floor.db", files)
        print(f"parse-only floor (the same XML parser, nothing else): {rates(args.items, floor)},"
              f" peak {floor['peak_mb']:.1f} MB")
        parse_only = run_child("parse", folder / "parse.db", files)
        print(f"parse only: {rates(args.items, parse_only)}, peak {parse_only['peak_mb']:.1f} MB")
        try:  # lxml against expat, measured each run where it is installed (the importer reads with expat)
            lx_floor = run_child("lxml_floor", folder / "lxml.db", files)
            lx_parse = run_child("lxml_parse", folder / "lxml.db", files)
        except subprocess.CalledProcessError:
            print("lxml not installed: not compared")
        else:
            print(f"lxml, not the importer's reader — floor (iterparse, tag filter, cleared): {rates(args.items, lx_floor)};"
                  f" with the importer's record building: {rates(args.items, lx_parse)}")
        singles, fulls = [], []
        for n in range(args.rounds):
            print(f"round {n + 1}: uptime load average {os.getloadavg()[0]:.1f}")
            singles.append(run_child("single", folder / f"single{n}.db", files))
            print(f"  single process (baseline): {rates(args.items, singles[-1])}; peak {singles[-1]['peak_mb']:.1f} MB")
            fulls.append(run_child("import", folder / f"cloud{n}.db", files))
            print(f"  parser children (pipeline): {rates(args.items, fulls[-1])}; peak {fulls[-1]['peak_mb']:.1f} MB "
                  f"(of which the parser children {fulls[-1]['child_peak_mb']:.1f} MB)")
        full_n = sorted(range(len(fulls)), key=lambda n: fulls[n]["seconds"])[len(fulls) // 2]
        full = fulls[full_n]
        single = sorted(singles, key=lambda m: m["seconds"])[len(singles) // 2]
        again = run_child("reimport", folder / "again.db", files)
        for m in (*singles, *fulls):
            assert m["items"] == args.items and m["offers"] == args.items and not m["warnings"], m
            assert (m["stock_levels"], m["moves"]) == (full["stock_levels"], full["moves"]), m
        rate = args.items / full["seconds"]
        print(f"full import: {full['items']} items, {full['offers']} offers, {full['barcodes']} barcodes, "
              f"{full['stock_levels']} ledger levels, {full['moves']} moves: {rates(args.items, full)}; "
              f"peak {full['peak_mb']:.1f} MB (targets: >= 50,000 items/s on a quiet box, <= 200 MB); single process (median): "
              f"{args.items / single['seconds']:,.0f} items/s wall")
        if full.get("own_peak_mb"):
            print(f"resident peak during the import itself: {full['own_peak_mb']:.1f} MB (the process's peak before "
                  f"it, opening the database and importing the modules: {full['rss_before_mb']:.1f} MB), "
                  f"the parser children {full['child_peak_mb']:.1f} MB; the last line gives their sum")
        print(f"the same package again (unchanged, as 1C re-sends a full catalog): {rates(args.items, again)}")
        floor_rate = args.items / floor["seconds"]
        print(f"the import against the parse-only floor: {rate:,.0f} / {floor_rate:,.0f} items/s wall ="
              f" {rate / floor_rate:.2f}; per CPU-second {floor['cpu_seconds'] / full['cpu_seconds']:.2f}")
        write = run_child("write", folder / "write.db", [folder / f"cloud{full_n}.db"])
        assert write["rows"]["items"] == full["items"] and write["rows"]["stock_moves"] == full["moves"], write
        write_rate = args.items / write["seconds"]
        print(f"write-only floor (the same rows as bare INSERTs into the same tables and indexes): "
              f"{rates(args.items, write)}; " + ", ".join(
                  f"{t} {n} ({write['table_seconds'][t]:.2f}s)" for t, n in write["rows"].items())
              + f" ({sum(write['rows'].values())} rows, one transaction; the rest of the time is the commit)")
        cores = 2  # the pipeline's shape: two parser children beside one writer (issue 19's 2-core box)
        bounds = {name: max(write["seconds"], max(m["file_seconds"]), (m["cpu_seconds"] + write["cpu_seconds"]) / cores)
                  for name, m in (("parser", parse_only), ("floor", floor))}
        print(f"ceiling (parsing on {cores} cores, writing in one process): wall >= max(write floor {write['seconds']:.2f}s,"
              f" slowest file's parse {max(parse_only['file_seconds']):.2f}s, (parse CPU {parse_only['cpu_seconds']:.2f}s"
              f" + write CPU {write['cpu_seconds']:.2f}s) / {cores}) = {bounds['parser']:.2f}s -> at most"
              f" {args.items / bounds['parser']:,.0f} items/s with the importer's parser; with the parse-only floor"
              f" instead ({max(floor['file_seconds']):.2f}s, {floor['cpu_seconds']:.2f}s CPU) {bounds['floor']:.2f}s ->"
              f" {args.items / bounds['floor']:,.0f} items/s (optimistic: the hand-over between processes not counted)")
        ceiling = args.items / bounds["parser"]
        print(f"items_per_s={rate:.0f} peak_mb={full['peak_mb']:.1f} floor_items_per_s={floor_rate:.0f}"
              f" ratio_to_floor={rate / floor_rate:.2f} write_floor_items_per_s={write_rate:.0f}"
              f" ceiling_items_per_s={ceiling:.0f}")


if __name__ == "__main__":
    main()
