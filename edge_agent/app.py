"""The packers' page: a small Flask app served on the LAN by waitress.

Staff log in with their name and PIN (hashes in edge.toml) and a station; the task list is sorted by
deadline; the pick / pack / handover / receipt / count screens keep one big scan field focused, so a
keyboard-wedge scanner types straight into it, and scans from the box's own scanners at the same station
show up live (server-sent events). Every answer to a scan — an unknown barcode, another order's item, a
used marking code, a printer problem — is a message on the screen; nothing is lost.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from functools import wraps
from typing import Any

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, session, url_for
from itsdangerous import BadData, URLSafeSerializer

import web
from edge_agent import store, words
from edge_agent.config import check_pin
from edge_agent.devices.printers import safe_name
from edge_agent.devices.scanners import fix_layout
from edge_agent.site import Site
from edge_agent.tasks import bins, handover, pack, pick, returns, stock, wave
from edge_agent.tasks import station as stations
from edge_agent.tasks.common import TaskError, lines_json

WEB = web.ROOT
MAX_PIN_FAILURES = 5  # wrong PINs from one address before it waits
MAX_NAME_PIN_FAILURES = 10  # wrong PINs for one name from any address before the name waits (unknown browsers)
LOCKOUT_S = 30.0  # the first lock after those wrong PINs; each next one twice as long
MAX_LOCKOUT_S = 3600.0
PIN_WINDOW_S = 900.0  # wrong PINs older than this (and not yet a lock) are forgotten
KNOWN_COOKIE = "edge_known"  # signed: the names that logged in with the right PIN in this browser before
KNOWN_S = 180 * 24 * 3600
MAX_LIVE_STREAMS = 24  # open live-update streams; the web server runs WEB_THREADS threads
WEB_THREADS = MAX_LIVE_STREAMS + 8  # the rest answer scans and pages even with every stream taken
MAX_REQUEST_BYTES = 64 * 1024  # a scan is a few hundred bytes at most; nothing the page sends is bigger
_CYRILLIC = frozenset("абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ")


def page_scan_text(code: str) -> str:
    """A scan typed into the page by a keyboard-wedge scanner, as the scanner meant it.

    The browser gets the scanner's keystrokes through the handheld's keyboard layout: with the Russian
    layout active, `A-02` arrives as `Ф-02` and a marking code's serial turns Cyrillic. Barcodes carry
    no Cyrillic, so a scan holding any is read back through the key positions (US layout).
    """
    if any(ch in _CYRILLIC for ch in code):
        return fix_layout(code)
    return code


def local_time(value: Any) -> str:
    """A deadline as the warehouse reads it: "27.11 10:00" in the box's own time zone (a value with no
    offset is shown as it came)."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is not None:
        when = when.astimezone()
    return when.strftime("%d.%m %H:%M")


def json_body() -> dict[str, Any]:
    """The request's JSON object; {} for anything else (bad JSON, a list, a number, nesting too deep)."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # `[[[[…` 60,000 deep: not a scan, and no reason for a 500
        return {}
    return body if isinstance(body, dict) else {}


def create_app(site: Site) -> Flask:
    app = Flask("edge_agent", template_folder=str(WEB / "templates" / "edge"), static_folder=str(WEB / "static" / "edge"),
                static_url_path="/static")
    app.secret_key = site.cfg.secret_key or store.kept_secret(site.conn, "session_key")
    app.config.update(SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_HTTPONLY=True, SEND_FILE_MAX_AGE_DEFAULT=0,
                      MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES)
    pins = PinThrottle()
    known = URLSafeSerializer(app.secret_key, salt="edge-known-packers")
    monitor = (site.cfg.monitor_token or "").encode()
    app.add_template_filter(local_time, "local_time")
    app.add_template_filter(lambda ts: datetime.fromtimestamp(ts).strftime("%d.%m.%Y %H:%M") if ts else "",
                            "local_time_ts")
    streams = LiveStreams(MAX_LIVE_STREAMS)
    app.extensions["live_streams"] = streams

    @app.errorhandler(413)
    def too_large(_exc: Any) -> Any:
        return jsonify(error="слишком большой запрос: это не скан штрихкода"), 413

    def login_required(view: Any) -> Any:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if "user" not in session:
                if request.path.startswith("/api/") or request.path == "/events":
                    return jsonify(error="войдите по PIN-коду"), 401
                return redirect(url_for("login"))
            return view(*args, **kwargs)

        return wrapper

    def user_station() -> str:
        return str(session.get("station") or site.cfg.stations[0])

    @app.context_processor
    def common() -> dict[str, Any]:
        return {"site_id": site.cfg.site_id, "user": session.get("user"), "station": session.get("station"),
                "status": page_status(site) if "user" in session else {}}  # the state only to a packer

    @app.get("/login")
    def login() -> Any:
        return render_template("login.html", staff=[s.name for s in site.cfg.staff], stations=site.cfg.stations,
                               error=None)

    def known_names() -> list[str]:
        try:
            names = known.loads(request.cookies.get(KNOWN_COOKIE, ""))
        except BadData:
            return []
        return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []

    @app.post("/login")
    def login_post() -> Any:
        """Name and PIN, throttled per address and per name (see `PinThrottle`); a browser where this name
        logged in before is not held up by the name's lock (a stranger guessing Анна's PIN elsewhere)."""
        ip = request.remote_addr or "?"
        name, pin = request.form.get("name", ""), request.form.get("pin", "")
        st = request.form.get("station", site.cfg.stations[0])
        wait = pins.wait(ip, name, trusted=name in known_names())
        if wait > 0:
            error = f"Слишком много неверных PIN-кодов: подождите {int(wait) + 1} с"
        else:
            staff = next((s for s in site.cfg.staff if s.name == name), None)
            if staff is not None and st in site.cfg.stations and check_pin(pin, staff.pin_hash):
                pins.succeeded(ip, name)
                session.clear()
                session.update(user=name, station=st)
                resp = redirect(url_for("tasks"))
                names = [name] + [n for n in known_names() if n != name]
                resp.set_cookie(KNOWN_COOKIE, known.dumps(names[:20]), max_age=KNOWN_S, httponly=True,
                                samesite="Strict", secure=request.is_secure)
                return resp
            # per name only for a name on the staff list: made-up names cannot grow the table
            pins.failed(ip, name if staff is not None else "", trusted=name in known_names())
            error = "Неверное имя или PIN-код"
        return render_template("login.html", staff=[s.name for s in site.cfg.staff], stations=site.cfg.stations,
                               error=error), 401

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    @login_required
    def tasks() -> Any:
        return render_template("tasks.html", tasks=task_list(site), handovers=handover_list(site),
                               waves=site_read(site, wave.open_waves),
                               wave_candidates=len(site_read(site, lambda c: wave.candidates(c, site.cfg.wave_max_orders))),
                               to_hand_over=site_read(site, handover.accounts_to_hand_over),
                               returns=site_read(site, returns.expected), documents=document_list(site),
                               closed=site_read(site, lambda c: handover.closed_recently(c, store.now() - DOCUMENTS_SHOWN_S)))

    @app.get("/task/<task_id>")
    @login_required
    def task_page(task_id: str) -> Any:
        mode = request.args.get("mode", "pack")
        try:
            site.act(stations.open_task, user_station(), task_id, mode, what="station")
        except TaskError as exc:
            return render_template("tasks.html", tasks=task_list(site), handovers=handover_list(site),
                                   error=str(exc)), 409
        return render_template("work.html", mode=mode, title=None, state=work_state(site, user_station()))

    def station_page(mode: str, ref: str) -> Any:
        """The work screen with the user's station set to `mode` on `ref` (a hand-over or a combined pick);
        404 when there is no such thing to work on."""
        try:
            site.act(stations.set_mode, user_station(), mode, ref, what="station")
        except TaskError:
            abort(404)
        return render_template("work.html", mode=mode, title=None, state=work_state(site, user_station()))

    @app.get("/handover/<handover_id>")
    @login_required
    def handover_page(handover_id: str) -> Any:
        return station_page("handover", handover_id)

    @app.get("/handover/<handover_id>/list")
    @login_required
    def handover_sheet(handover_id: str) -> Any:
        """Our own hand-over list, a page to print: order numbers, marketplace, parcel count, what stayed."""
        try:
            data = site_read(site, lambda c: handover.sheet(c, handover_id))
        except TaskError:
            abort(404)
        return render_template("handover_list.html", h=data)

    @app.get("/documents/<int:doc_id>")
    @login_required
    def document(doc_id: int) -> Any:
        """A marketplace's hand-over document as it came (an A4 act opens in the browser, which prints it
        on the office printer)."""
        d = site.row("SELECT handover_id, kind, format, data_b64 FROM documents WHERE id = ?", doc_id)
        if d is None:
            abort(404)
        mime = DOCUMENT_TYPES.get(d["format"], "application/octet-stream")
        name = safe_name(f"{d['handover_id']}-{d['kind']}") + f".{d['format']}"
        # what the marketplace sent is shown, never run: no script of an SVG reaches the page's origin
        return Response(base64.b64decode(d["data_b64"]), mimetype=mime,
                        headers={"Content-Disposition": f'inline; filename="{name}"', "X-Content-Type-Options": "nosniff",
                                 "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"})

    @app.post("/wave")
    @login_required
    def wave_new() -> Any:
        """«Общая сборка»: the orders not yet picked (earliest deadline first) in one walk by bin."""
        try:
            wave_id = site.act(wave.create, site.cfg.wave_max_orders, session["user"], what="task")
        except TaskError as exc:
            return render_template("tasks.html", tasks=task_list(site), handovers=handover_list(site),
                                   error=str(exc)), 409
        return redirect(url_for("wave_page", wave_id=wave_id))

    @app.get("/wave/<wave_id>")
    @login_required
    def wave_page(wave_id: str) -> Any:
        """The combined pick list on the handheld: bin by bin, every order's units at once."""
        return station_page("wave", wave_id)

    @app.get("/wave/<wave_id>/sort")
    @login_required
    def wave_sort_page(wave_id: str) -> Any:
        """At the packing table: each unit scanned is told its tote (order) and packed there."""
        return station_page("sort", wave_id)

    @app.get("/wave/<wave_id>/list")
    @login_required
    def wave_sheet(wave_id: str) -> Any:
        """The combined pick list to print: by bin, each line with its orders' totes; the totes below."""
        try:
            data = site_read(site, lambda c: wave.summary(c, wave_id))
        except TaskError:
            abort(404)
        return render_template("wave_list.html", w=data,
                               units=sum(g["quantity"] for g in data["lines"]),
                               orders_word=words.orders(len(data["totes"])),
                               bins_word=words.bins(len({g["bin"] for g in data["lines"] if g["bin"]})))

    @app.get("/return")
    @login_required
    def return_page() -> Any:
        """The «Возврат» screen: scan the parcel or the order, then each unit."""
        site.act(stations.set_mode, user_station(), "return", what="station")
        return render_template("work.html", mode="return", title=None, state=work_state(site, user_station()))

    @app.get("/<any(receipt, count):mode>")
    @login_required
    def tally_page(mode: str) -> Any:
        site.act(stations.set_mode, user_station(), mode, what="station")
        return render_template("work.html", mode=mode, title=None, state=work_state(site, user_station()))

    # -- JSON API used by the page's script --------------------------------------------------------

    @app.post("/api/scan")
    @login_required
    def api_scan() -> Any:
        body = json_body()
        code, scan_id = body.get("code"), body.get("scan_id")
        if not isinstance(code, str) or not code.strip():
            return jsonify(error="пустой скан"), 400
        if not isinstance(scan_id, str) or not 8 <= len(scan_id) <= 64:
            scan_id = None
        text = page_scan_text(code)
        if text != code and site.knows_code(code.strip()):  # a bin or a number really written in Cyrillic
            text = code
        res = site.scan(user_station(), text, via="page",
                        scan_id=f"{session['user']}:{scan_id}" if scan_id else None)
        return jsonify(result=res.to_json(), state=work_state(site, user_station()))

    @app.get("/api/state")
    @login_required
    def api_state() -> Any:
        return jsonify(state=work_state(site, user_station()))

    @app.get("/api/tasks")
    @login_required
    def api_tasks() -> Any:
        return jsonify(tasks=task_list(site), handovers=handover_list(site), status=page_status(site))

    @app.post("/api/short")
    @login_required
    def api_short() -> Any:
        line_no = json_body().get("line_no")
        st = work_state(site, user_station())
        if (isinstance(line_no, bool) or not isinstance(line_no, int)) and st.get("mode") != "wave":
            return jsonify(error="не указана строка задания"), 400
        if st.get("wave") and st["mode"] == "wave":  # a line of the combined pick: {bin, item_id}
            body = json_body()
            shelf, item_id = body.get("bin"), body.get("item_id")
            if not isinstance(shelf, str) or not isinstance(item_id, str):
                return jsonify(error="не указана строка сборки"), 400
            try:
                res = site.act(wave.report_short, site.send, st["wave"]["wave_id"], shelf, item_id)
            except TaskError as exc:
                return jsonify(error=str(exc)), 409
            return jsonify(result=res.to_json(), state=work_state(site, user_station()))
        if not st.get("task"):
            return jsonify(error="нет открытого задания"), 409
        try:
            if st["mode"] == "pick":
                res = site.act(pick.report_short, site.send, st["task"]["task_id"], line_no)
            else:
                res = site.act(pack.report_short, site.send, st["task"]["task_id"], line_no,
                               site.cfg.warehouse)
        except TaskError as exc:
            return jsonify(error=str(exc)), 409
        return jsonify(result=res.to_json(), state=work_state(site, user_station()))

    @app.post("/api/handover/close")
    @login_required
    def api_handover_close() -> Any:
        body = json_body()
        st = work_state(site, user_station())
        if st.get("mode") != "handover":
            return jsonify(error="нет открытой передачи"), 409
        try:
            out = site.act(handover.close, site.send, st["handover"]["handover_id"], body.get("force") is True)
        except TaskError as exc:
            return jsonify(error=str(exc)), 409
        return jsonify(summary=out, state=work_state(site, user_station()))

    @app.post("/api/handover/request")
    @login_required
    def api_handover_request() -> Any:
        """The senior packer asks the cloud for a hand-over of one account's packed parcels."""
        account = json_body().get("account")
        if not isinstance(account, str) or not account:
            return jsonify(error="выберите кабинет маркетплейса"), 400
        try:
            message = site.act(handover.request, site.send, account, session["user"], what="request")
        except TaskError as exc:
            return jsonify(error=str(exc)), 409
        return jsonify(message=message)

    def open_return() -> str | None:
        st = work_state(site, user_station())
        return st["ret"]["return_id"] if st.get("mode") == "return" and st.get("ret") else None

    @app.post("/api/return/mark")
    @login_required
    def api_return_mark() -> Any:
        """Mark one unit of the open return good or defective."""
        body = json_body()
        unit, defective = body.get("unit"), body.get("defective")
        if isinstance(unit, bool) or not isinstance(unit, int) or not isinstance(defective, bool):
            return jsonify(error="нужны единица и отметка: годен или брак"), 400
        rid = open_return()
        if rid is None:
            return jsonify(error="нет открытого возврата: отсканируйте посылку"), 409
        try:
            site.act(returns.mark, rid, unit, defective, what="return")
        except TaskError as exc:
            return jsonify(error=str(exc)), 409
        return jsonify(state=work_state(site, user_station()))

    @app.post("/api/return/commit")
    @login_required
    def api_return_commit() -> Any:
        """Take the open return in: good units back on hand, defective to the defect stock, the cloud told."""
        rid = open_return()
        if rid is None:
            return jsonify(error="нет открытого возврата: отсканируйте посылку"), 409
        try:
            out = site.act(returns.commit, site.send, user_station(), rid, site.cfg.warehouse, session["user"],
                           what="return")
        except TaskError as exc:
            return jsonify(error=str(exc)), 409
        return jsonify(received=out, state=work_state(site, user_station()))

    @app.post("/api/return/aside")
    @login_required
    def api_return_aside() -> Any:
        """Put the open return aside (a wrong parcel, or a question to ask): its scans are kept."""
        if open_return() is None:
            return jsonify(error="нет открытого возврата"), 409
        site.act(returns.put_aside, user_station(), what="return")
        return jsonify(state=work_state(site, user_station()))

    @app.post("/api/tally/set")
    @login_required
    def api_tally_set() -> Any:
        """Correct one item of the receipt / count being built (a unit scanned twice: one less)."""
        body = json_body()
        item_id, quantity = body.get("item_id"), body.get("quantity")
        if not isinstance(item_id, str) or isinstance(quantity, bool) or not isinstance(quantity, int):
            return jsonify(error="не указаны товар и количество"), 400
        if work_state(site, user_station()).get("mode") not in ("receipt", "count"):
            return jsonify(error="это не приёмка и не пересчёт"), 409
        try:
            site.act(stock.set_quantity, user_station(), item_id, quantity)
        except TaskError as exc:
            return jsonify(error=str(exc)), 409
        return jsonify(state=work_state(site, user_station()))

    @app.post("/api/tally/commit")
    @login_required
    def api_tally_commit() -> Any:
        st = work_state(site, user_station())
        ref = f"{user_station()}-{int(time.time())}"
        try:
            if st.get("mode") == "receipt":
                out = site.act(stock.commit_receipt, site.send, user_station(), site.cfg.warehouse, ref,
                               session["user"])
            elif st.get("mode") == "count":
                out = site.act(stock.commit_count, site.send, user_station(), site.cfg.warehouse, ref, session["user"])
            else:
                return jsonify(error="это не приёмка и не пересчёт"), 409
        except TaskError as exc:
            return jsonify(error=str(exc)), 409
        message = f"Проведено: {words.items(len(out))}, {sum(out.values())} шт."
        placed = sum(1 for it in st.get("tally") or [] if it.get("bin_new") and it["item_id"] in out)
        if placed:
            message += f"; ячейки запомнены для {words.items(placed)}"
        return jsonify(committed=out, message=message, state=work_state(site, user_station()))

    @app.post("/api/print/again")
    @login_required
    def api_print_again() -> Any:
        st = work_state(site, user_station())
        order_id = json_body().get("order_id")
        if isinstance(order_id, str) and order_id:  # a parcel at the courier's table
            try:
                message = site.act(handover.reprint, order_id, what="print")
            except TaskError as exc:
                return jsonify(error=str(exc)), 409
            return jsonify(message=message, state=work_state(site, user_station()))
        if not st.get("task"):
            return jsonify(error="нет открытого задания"), 409
        try:
            site.act(pack.reprint_label, st["task"]["task_id"], what="print")
        except TaskError as exc:
            return jsonify(error=str(exc)), 409
        return jsonify(state=work_state(site, user_station()))

    @app.get("/api/print/questions")
    @login_required
    def api_print_questions() -> Any:
        return jsonify(questions=site.printing.questions())

    @app.post("/api/print/answer")
    @login_required
    def api_print_answer() -> Any:
        """«Этикетка напечаталась?» — printed: true (yes, nothing is sent) or false (print it again)."""
        body = json_body()
        job_id, printed = body.get("job_id"), body.get("printed")
        if isinstance(job_id, bool) or not isinstance(job_id, int) or not isinstance(printed, bool):
            return jsonify(error="нужны номер задания печати и ответ: напечаталась или нет"), 400
        try:
            message = site.act(site.printing.answer, job_id, printed, what="print")
        except TaskError as exc:
            return jsonify(error=str(exc)), 409
        return jsonify(message=message, questions=site.printing.questions())

    @app.post("/api/print/retry")
    @login_required
    def api_print_retry() -> Any:
        site.retry_printing()
        return jsonify(ok=True)

    @app.get("/api/status")
    def api_status() -> Any:
        """The link, the queue and the printer: for a packer logged in by PIN, or a monitor holding
        `[web] monitor_token` (Bearer); nobody else on the LAN."""
        bearer = request.headers.get("Authorization", "")
        by_token = bool(monitor) and bearer.startswith("Bearer ") and hmac.compare_digest(
            bearer[7:].strip().encode(), monitor)
        if "user" not in session and not by_token:
            return jsonify(error="войдите по PIN-коду или передайте токен мониторинга"), 401
        return jsonify(page_status(site))

    @app.get("/events")
    @login_required
    def events() -> Any:
        return Response(_event_stream(site, user_station(), streams), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


class PinThrottle:
    """Wrong PINs, per address and per name: `MAX_PIN_FAILURES` from one address, or
    `MAX_NAME_PIN_FAILURES` for one name from anywhere, and that address or name waits `LOCKOUT_S`,
    twice as long with each next lock (up to `MAX_LOCKOUT_S`). A browser the name logged in from before
    (`trusted`) is held up only by its address, never by the name's lock. In memory: a restart forgets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # "ip:<addr>" | "name:<name>" -> (wrong PINs, locked until — or, while not locked, when the first
        # of them came —, locks so far)
        self._by: dict[str, tuple[int, float, int]] = {}

    def wait(self, ip: str, name: str, *, trusted: bool) -> float:
        now = time.time()
        keys = [f"ip:{ip}"] + ([] if trusted else [f"name:{name}"])
        with self._lock:
            return max(0.0, *(self._by.get(k, (0, 0.0, 0))[1] - now for k in keys))

    def failed(self, ip: str, name: str, *, trusted: bool) -> None:
        now = time.time()
        with self._lock:
            for key, limit in ((f"ip:{ip}", MAX_PIN_FAILURES), (f"name:{name}", MAX_NAME_PIN_FAILURES)):
                if key.startswith("name:") and (trusted or not name):
                    continue  # the name's own browser mistyping: counted against its address only
                count, until, locks = self._by.get(key, (0, 0.0, 0))
                if count and now - until > PIN_WINDOW_S:  # wrong PINs this long ago are forgotten
                    count = 0
                count += 1
                if count >= limit:  # guessing: a lock that doubles each time
                    self._by[key] = (0, now + min(MAX_LOCKOUT_S, LOCKOUT_S * 2**locks), locks + 1)
                else:
                    self._by[key] = (count, until if count > 1 else now, locks)

    def succeeded(self, ip: str, name: str) -> None:
        with self._lock:
            self._by.pop(f"ip:{ip}", None)


class LiveStreams:
    """The open live-update streams. Each holds one of the web server's threads, so there are at most
    `limit`: a new one ends the oldest (most often a page reloaded or closed whose connection has not
    noticed yet; a live page reconnects by itself), and threads stay free for scans."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open: list[threading.Event] = []

    def enter(self) -> threading.Event:
        ended = threading.Event()
        with self._lock:
            while len(self._open) >= self.limit:
                self._open.pop(0).set()
            self._open.append(ended)
        return ended

    def leave(self, ended: threading.Event) -> None:
        with self._lock:
            if ended in self._open:
                self._open.remove(ended)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._open)


def _event_stream(site: Site, station_name: str, streams: LiveStreams) -> Iterator[str]:
    ended = streams.enter()
    try:
        seen = site.changes.version
        yield "retry: 2000\n\n"
        deadline = time.time() + 300  # the browser reconnects; no stream holds a server thread for ever
        quiet_since = time.time()
        while time.time() < deadline and not site.stopping and not ended.is_set():
            v = site.changes.wait(seen, timeout=1)
            if v == seen:
                if time.time() - quiet_since >= 10:
                    quiet_since = time.time()
                    yield ": ping\n\n"
                continue
            seen, quiet_since = v, time.time()
            if site.stopping or ended.is_set():
                break
            last = dict(site.changes.last)
            if last.get("what") == "scan":
                last["kind"] = (last.get("result") or {}).get("kind")  # enough for the task list to decide
                if last.get("station") != station_name:
                    last.pop("result", None)
            yield f"data: {json.dumps(last, ensure_ascii=False)}\n\n"
    finally:
        streams.leave(ended)


# -- what the pages show --------------------------------------------------------------------------


def page_status(site: Site) -> dict[str, Any]:
    link = site.link_status()
    ps = site.printer_state
    pending = site.row("SELECT COUNT(*) AS n FROM print_jobs WHERE state='pending'")
    asked = site.row("SELECT COUNT(*) AS n FROM print_jobs WHERE state='unknown'")
    return {"online": link["online"], "queue": link["queue"], "printer_ok": ps.ok, "printer_message": ps.message,
            "prints_pending": int(pending["n"]) if pending else 0, "prints_asked": int(asked["n"]) if asked else 0,
            "device_problems": site.problems()}


def task_list(site: Site) -> list[dict[str, Any]]:
    rows = site.rows(
        "SELECT t.*, (SELECT SUM(quantity) FROM task_lines l WHERE l.task_id = t.task_id) AS units, "
        "(SELECT SUM(packed) FROM task_lines l WHERE l.task_id = t.task_id) AS packed_units, "
        "EXISTS(SELECT 1 FROM labels b WHERE b.order_id = t.order_id) AS has_label "
        "FROM tasks t WHERE t.state NOT IN ('cancelled','handed_over') "
        "ORDER BY CASE WHEN t.state IN ('packed','short') THEN 1 ELSE 0 END, COALESCE(t.deadline, '9999'), t.created_at "
        "LIMIT 500")
    return [dict(r) for r in rows]


def handover_list(site: Site) -> list[dict[str, Any]]:
    """The open hand-overs, each with its parcels as a list and their count as a number."""
    out = []
    for r in site.rows("SELECT handover_id, marketplace, account, supply_id, order_ids, state FROM handovers "
                       "WHERE state = 'open' ORDER BY created_at"):
        h = dict(r)
        h["order_ids"] = json.loads(h["order_ids"])
        h["parcels"] = len(h["order_ids"])
        out.append(h)
    return out


DOCUMENT_TYPES = {"pdf": "application/pdf", "png": "image/png", "svg": "image/svg+xml", "zpl": "text/plain"}
DOCUMENTS_SHOWN_S = 3 * 86400  # the task list shows the hand-over documents of the last three days


def document_list(site: Site) -> list[dict[str, Any]]:
    """The marketplaces' hand-over documents of the last days, newest first: title, and whether the label
    printer prints it (a sheet is opened from the page)."""
    return [dict(r) for r in site.rows(
        "SELECT d.id, d.handover_id, d.kind, d.title, d.format, d.job_id, j.state AS print_state FROM documents d "
        "LEFT JOIN print_jobs j ON j.id = d.job_id WHERE d.received_at > ? ORDER BY d.id DESC LIMIT 50",
        store.now() - DOCUMENTS_SHOWN_S)]


def site_read(site: Site, fn: Any) -> Any:
    """`fn(conn)` read under the site's lock."""
    with store.locked():
        return fn(site.conn)


def work_state(site: Site, station_name: str) -> dict[str, Any]:
    with store.locked():
        conn = site.conn
        st = store.row(conn, "SELECT * FROM stations WHERE station = ?", station_name)
        if st is None:
            return {"station": station_name, "mode": "pack", "task": None}
        out: dict[str, Any] = {"station": station_name, "mode": st["mode"], "task": None,
                               "version": store.commits()}  # the page never shows an older state over a newer one
        last = store.row(conn, "SELECT * FROM scans WHERE station = ? ORDER BY id DESC LIMIT 1", station_name)
        out["last_scan"] = dict(last) if last else None
        if st["mode"] == "handover" and st["task_id"]:
            out["handover"] = handover.summary(conn, st["task_id"])
        elif st["mode"] == "return":
            out["ret"] = returns.summary(conn, st["task_id"]) if st["task_id"] else None
            out["returns"] = returns.expected(conn)
        elif st["mode"] in ("receipt", "count"):
            pad = stock.scratch(conn, station_name)
            where = stock.bins_pad(conn, station_name)
            names = {r["item_id"]: r["name"] for r in store.rows(conn, "SELECT item_id, name FROM catalog")}
            out["tally"] = [{"item_id": k, "name": names.get(k, k), "quantity": v,
                             "bin": where["items"].get(k) or bins.bin_of(conn, k) or "",
                             "bin_new": bool(where["items"].get(k))} for k, v in pad.items()]
            out["current_bin"] = where["current"]
        elif st["mode"] in ("wave", "sort") and st["task_id"]:
            out["wave"] = wave.summary(conn, st["task_id"])
        elif st["task_id"]:
            t = store.row(conn, "SELECT * FROM tasks WHERE task_id = ?", st["task_id"])
            if t is not None:
                out["task"] = dict(t)
                out["lines"] = lines_json(conn, t["task_id"])
                job = store.row(conn, "SELECT state, error, file FROM print_jobs WHERE order_id = ? AND kind = 'label' "
                                "ORDER BY id DESC LIMIT 1", t["order_id"])
                out["label"] = dict(job) if job else None
                cur = pick.current_line(conn, t["task_id"]) if st["mode"] == "pick" else None
                out["current_line"] = cur["line_no"] if cur else None
    return out
