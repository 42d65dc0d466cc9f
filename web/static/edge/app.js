// The packers' page: a scan field that keeps focus (keyboard-wedge scanners type into it), live updates
// over server-sent events, and one clear message for every scan. Written for this project; no libraries.
(function () {
  "use strict";
  const $ = (s) => document.querySelector(s);
  const page = document.querySelector("[data-page]");
  if (!page) return;
  const kind = page.dataset.page;

  async function api(path, body) {
    const opts = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
    const r = await fetch(path, opts);
    if (r.status === 401) { location.href = "/login"; throw new Error("login"); }
    const data = await r.json().catch(() => ({error: "нет ответа от склада"}));
    data._status = r.status;
    return data;
  }

  function beep(bad) {
    try {
      const ctx = beep.ctx || (beep.ctx = new (window.AudioContext || window.webkitAudioContext)());
      const o = ctx.createOscillator(), g = ctx.createGain();
      o.frequency.value = bad ? 220 : 880; o.type = bad ? "square" : "sine";
      o.connect(g); g.connect(ctx.destination); g.gain.value = 0.2;
      o.start(); o.stop(ctx.currentTime + (bad ? 0.5 : 0.08));
    } catch (e) { /* no sound: the colour still tells */ }
    if (bad && navigator.vibrate) navigator.vibrate([200, 100, 200]);
  }

  async function refreshStatus() {
    const s = await api("/api/status").catch(() => null);
    if (!s) { setBadge($("#link-badge"), false, "склад не отвечает"); return; }
    setBadge($("#link-badge"), s.online, s.online ? "на связи" : "нет связи · в очереди " + s.queue);
    $("#link-badge").dataset.online = s.online ? "1" : "0";
    let p = s.printer_ok ? "принтер" : "принтер: проблема";
    if (s.prints_pending) p += " · ждут " + s.prints_pending;
    if (s.prints_asked) p += " · вопрос: " + s.prints_asked;
    setBadge($("#printer-badge"), s.printer_ok && !s.prints_asked, p);
    if (!s.printer_ok) $("#printer-badge").title = s.printer_message;
    refreshQuestions();
    const cam = $("#camera-badge");
    if (cam) { cam.hidden = !(s.device_problems && s.device_problems.length); cam.title = (s.device_problems || []).join("; "); }
  }
  // «Этикетка напечаталась?»: a job that was going to a real printer when the box stopped is never sent
  // again on its own; the packer looks at the printer and answers.
  const WHAT = {label: "Этикетка заказа", act: "Лист передачи", supply_qr: "QR-код поставки", document: "Документ передачи"};
  async function refreshQuestions() {
    const box = $("#print-questions");
    if (!box) return;
    const r = await api("/api/print/questions").catch(() => null);
    if (!r || !r.questions) return;
    box.hidden = !r.questions.length;
    box.innerHTML = r.questions.map((q) => `<div class="question" data-job="${q.job_id}">` +
      `<b>${esc(WHAT[q.kind] || q.kind)} ${esc(q.number || q.order_id)}: напечаталась?</b>` +
      `<div class="sub">${esc(q.message)}</div>` +
      `<button class="answer yes" data-job="${q.job_id}" data-printed="1">Да</button> ` +
      `<button class="answer no" data-job="${q.job_id}" data-printed="0">Нет — напечатать снова</button></div>`).join("");
  }
  const questions = $("#print-questions");
  if (questions) questions.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.answer");
    if (!b) return;
    const r = await api("/api/print/answer", {job_id: Number(b.dataset.job), printed: b.dataset.printed === "1"});
    showResult(r.error ? {ok: false, kind: "info", message: r.error} : {ok: true, kind: "info", message: r.message});
    refreshQuestions();
    refreshStatus();
  });

  function setBadge(el, ok, text) { if (!el) return; el.textContent = text; el.className = "badge " + (ok ? "ok" : "off"); }

  let lastTote = null;  // the tote the last unit scanned at the sorting table went to
  function showResult(res) {
    const msg = $("#msg");
    if (!msg || !res) return;
    if (res.data && res.data.tote) lastTote = res.data.tote;
    msg.textContent = res.message;
    msg.className = "msg " + (res.ok ? (res.kind === "done" ? "done" : "good") : "bad") + " kind-" + res.kind;
    msg.dataset.kind = res.kind;
    beep(!res.ok);
  }

  function esc(s) { return String(s == null ? "" : s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }

  let shownVersion = -1;  // answers may arrive out of order (a live update's fetch overtaken by a scan's answer)
  function render(state) {
    const ul = $("#lines");
    if (!ul) return;
    if (typeof state.version === "number") {
      if (state.version < shownVersion) return;  // older than what is on the screen: not shown over it
      shownVersion = state.version;
    }
    const mode = page.dataset.mode;
    let html = "";
    if (state.task) {
      const t = state.task;
      $("#order").textContent = (t.number || t.order_id) + " · " + t.marketplace;
      for (const ln of state.lines || []) {
        const need = ln.quantity - ln.short;
        const got = mode === "pick" ? ln.picked : ln.packed;
        const done = got >= need;
        html += `<li class="line${done ? " done" : ""}${state.current_line === ln.line_no ? " current" : ""}" data-line="${ln.line_no}">` +
          `<div class="t-main"><b>${esc(ln.name || ln.item_id)}</b>${ln.marking_required ? ' <span class="tag">ЧЗ</span>' : ""}` +
          (ln.title ? `<div class="title2">${esc(ln.title)}</div>` : "") +
          `<div class="sub">${ln.bin ? "ячейка " + esc(ln.bin) + " · " : ""}${esc(ln.barcode || "")}</div></div>` +
          `<span class="count">${got}/${need}</span>` +
          (!done && ["new", "picking", "packing", "picked"].includes(t.state) ? `<button class="short" data-line="${ln.line_no}" title="Товара нет: недостача">Нет</button>` : "") + "</li>";
      }
      const lab = state.label;
      const ls = $("#label-status");
      if (t.state === "cancelled") {
        const text = "ЗАКАЗ " + (t.number || t.order_id) + " ОТМЕНЁН: не отправляйте его — разберите посылку" +
          (lab && lab.state === "done" ? ", снимите этикетку" : "") + " и верните товар на место";
        // told once, in the big message (with its sound); the note under it does not say it again
        ls.textContent = ""; ls.className = "note"; ls.dataset.state = "cancelled";
        if (shown.task !== t.task_id || shown.state !== "cancelled") showResult({ok: false, kind: "cancelled", message: text});
      } else if (t.state === "packed") {
        ls.textContent = lab && lab.state === "done" ? "Этикетка напечатана" : (lab && lab.error ? lab.error : "Этикетка печатается…");
        ls.className = "note " + (lab && lab.state === "done" ? "good" : (lab && lab.error ? "bad" : ""));
        ls.dataset.state = lab ? lab.state : "";
      } else { ls.textContent = ""; ls.dataset.state = ""; }
    } else if (state.handover) {
      const h = state.handover;
      const closeBtn = $("#close-handover");
      if (closeBtn) {
        closeBtn.disabled = h.state !== "open";
        closeBtn.textContent = h.state === "open" ? "Закрыть передачу" : "Передача закрыта";
      }
      $("#order").textContent = (h.supply_id || h.handover_id) + " · " + h.scanned.length + " из " + h.expected.length;
      for (const o of h.expected) {
        const done = h.scanned.includes(o), why = (h.missing_why || {})[o], label = (h.labels || {})[o];
        // why it cannot go yet: its label's trouble in words, or another reason (cancelled, not packed)
        const tag = done || !why || why === "не отсканирована" ? "" : (why === "этикетка не напечатана" ? LABEL_WORDS[label] || why : why);
        html += `<li class="line${done ? " done" : ""}" data-order="${esc(o)}"><b class="t-main">${esc(o)}</b>` +
          (tag ? ` <span class="tag bad">${esc(tag)}</span>` : "") +
          (!done && ["none", "printed", "printer_problem"].includes(label) ? `<button class="reprint-order" data-order="${esc(o)}">Напечатать этикетку</button>` : "") +
          "</li>";
      }
      for (const o of h.extra) html += `<li class="line extra"><b>${esc(o)}</b> <span class="tag">лишняя</span></li>`;
    } else if (mode === "return") {
      const r = state.ret;
      if (r) {
        $("#order").textContent = r.number + (r.marketplace ? " · " + r.marketplace : "");
        for (const ln of r.lines) html += `<li class="line${ln.taken >= ln.quantity ? " done" : ""}" data-item="${esc(ln.item_id)}">` +
          `<b class="t-main">${esc(ln.name || ln.item_id)}</b><span class="count">${ln.taken}/${ln.quantity}</span></li>`;
        for (const u of r.units) html += `<li class="line unit${u.defective ? " defective" : ""}" data-unit="${u.id}">` +
          `<span class="t-main">${esc(u.name)} <small>${esc(u.code)}</small></span>` +
          `<span class="tag${u.defective ? " bad" : ""}">${u.defective ? "брак" : "годен"}</span>` +
          `<button class="mark" data-unit="${u.id}" data-defective="${u.defective ? 0 : 1}">${u.defective ? "Годен" : "Брак"}</button></li>`;
      } else {
        $("#order").textContent = "";
        html = '<li class="empty">Отсканируйте посылку или номер заказа</li>';
        for (const e of state.returns || []) html += `<li class="line expected" data-return="${esc(e.return_id)}">` +
          `<b class="t-main">${esc(e.number || e.order_id)}</b> <span class="mp">${esc(e.marketplace || "")}</span>` +
          `<span class="count">${e.units} шт.</span></li>`;
      }
    } else if (state.wave && mode === "wave") {
      const w = state.wave, cur = w.current || [];
      const left = w.lines.reduce((n, g) => n + g.quantity - g.short - g.picked, 0);
      $("#order").textContent = "№" + w.wave_id + " · заказов: " + w.totes.length + " · осталось взять " + left + " шт.";
      for (const g of w.lines) {
        const done = g.picked + g.short >= g.quantity, isCur = cur[0] === g.bin && cur[1] === g.item_id;
        html += `<li class="line${done ? " done" : ""}${isCur ? " current" : ""}" data-bin="${esc(g.bin)}" data-item="${esc(g.item_id)}">` +
          `<span class="bin">${esc(g.bin || "—")}</span><div class="t-main"><b>${esc(g.name || g.item_id)}</b>` +
          (g.title ? `<div class="title2">${esc(g.title)}</div>` : "") +
          `<div class="sub">${esc(g.barcode)} · ` + g.orders.map((o) => `ящик ${o.tote}: ${esc(o.number)} ×${o.quantity}`).join(", ") +
          `</div></div><span class="count">${g.picked}/${g.quantity - g.short}</span>` +
          (!done ? `<button class="short-wave" data-bin="${esc(g.bin)}" data-item="${esc(g.item_id)}" title="Товара нет: недостача">Нет</button>` : "") + "</li>";
      }
    } else if (state.wave && mode === "sort") {
      const w = state.wave;
      $("#order").textContent = "№" + w.wave_id + " · ящиков: " + w.totes.length;
      for (const t of w.totes) {
        const done = t.state === "packed" || t.packed >= t.need;
        html += `<li class="line${done ? " done" : ""}${lastTote === t.tote ? " current" : ""}" data-tote="${t.tote}">` +
          `<span class="tote">${t.tote}</span><div class="t-main"><b>${esc(t.number)}</b> <span class="mp">${esc(t.marketplace)}</span>` +
          `<div class="sub">${esc(t.goods.join(", "))}${t.state === "cancelled" ? " · ОТМЕНЁН" : ""}</div></div>` +
          `<span class="count">${t.packed}/${t.need}</span></li>`;
      }
    } else if (state.tally) {
      $("#order").textContent = state.current_bin ? "ячейка " + state.current_bin : "";
      for (const it of state.tally) html += `<li class="line" data-item="${esc(it.item_id)}"><b class="t-main">${esc(it.name)}` +
        (it.bin ? ` <small class="sub bin-of">ячейка ${esc(it.bin)}${it.bin_new ? " (новая)" : ""}</small>` : "") + `</b>` +
        `<span class="count">${it.quantity}</span><button class="less" data-item="${esc(it.item_id)}" data-quantity="${it.quantity - 1}" title="Отсканировали лишнюю: на одну меньше">−1</button></li>`;
      if (!state.tally.length) html = '<li class="empty">Сканируйте товар; чтобы запомнить ячейку — сначала её этикетку, потом товары в ней</li>';
    } else {
      html = '<li class="empty">Нет открытого задания: отсканируйте товар или выберите заказ в списке</li>';
    }
    ul.innerHTML = html;
    const again = $("#reprint");
    if (again) again.hidden = !(state.task && state.task.state === "packed" && state.label && state.label.state === "done");
    shown.task = state.task ? state.task.task_id : null;
    shown.state = state.task ? state.task.state : null;
  }
  const shown = {task: null, state: null};
  const LABEL_WORDS = {printing: "этикетка печатается", printer_problem: "этикетка: проблема с принтером",
    waiting_label: "этикетка ещё не пришла", asked: "этикетка: ответьте, напечаталась ли", none: "этикетки нет"};  // the order this screen showed last: a cancellation is told once

  function newId() {  // crypto.randomUUID needs https; the page is served over plain http on the LAN
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // A scan whose answer is lost on the way (Wi-Fi) is sent again with the same id: the site answers it
  // once and applies it once, so the packer never has to guess whether to scan the unit again.
  async function sendScan(code, scanId) {
    for (let attempt = 1; attempt <= SCAN_ATTEMPTS; attempt++) {
      try {
        return await api("/api/scan", {code, scan_id: scanId});
      } catch (e) {
        if (e.message === "login") throw e;
        const msg = $("#msg");  // no beep for each try: the packer hears the answer when it comes
        msg.textContent = "нет связи со складом — отправляю скан " + code + " ещё раз…";
        msg.className = "msg bad kind-resending"; msg.dataset.kind = "resending";
        await new Promise((ok) => setTimeout(ok, 1000));
      }
    }
    return {error: "склад не отвечает — скан " + code + " не принят, отсканируйте его снова"};
  }
  const SCAN_ATTEMPTS = 30;

  if (kind === "work") {
    const input = $("#scan");
    const keepFocus = () => setTimeout(() => { if (document.activeElement.tagName !== "BUTTON") input.focus(); }, 80);
    input.addEventListener("blur", keepFocus);
    // Scanners set to end a scan with Tab instead of Enter: Tab must not carry the focus (and the next
    // scan) away from the field, it ends the scan.
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Tab" && input.value.trim()) { ev.preventDefault(); $("#scan-form").requestSubmit(); }
    });
    // Scans go to the site one at a time, in the order they were read: a scanner fires faster than a
    // handheld's Wi-Fi answers, and two requests in flight may overtake each other.
    let sending = Promise.resolve();
    $("#scan-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const code = input.value;
      input.value = "";
      if (!code.trim()) return;
      const scanId = newId();
      sending = sending.then(async () => {
        const r = await sendScan(code, scanId);
        if (r.error) showResult({ok: false, kind: "info", message: r.error});
        else { showResult(r.result); render(r.state); }
      }).catch(() => { /* sent to the login page */ });
      input.focus();
    });
    // A scan fired before this script was there (a slow handheld): the form only noted it (no reload that
    // would drop it); it goes now, as if just read.
    if ($("#scan-form").dataset.early && input.value.trim()) {
      delete $("#scan-form").dataset.early;
      $("#scan-form").requestSubmit();
    }
    $("#lines").addEventListener("click", async (ev) => {
      const less = ev.target.closest("button.less");
      if (less) {
        const r = await api("/api/tally/set", {item_id: less.dataset.item, quantity: Number(less.dataset.quantity)});
        if (r.error) showResult({ok: false, kind: "info", message: r.error}); else render(r.state);
        input.focus();
        return;
      }
      const again = ev.target.closest("button.reprint-order");
      if (again) {
        const r = await api("/api/print/again", {order_id: again.dataset.order});
        showResult(r.error ? {ok: false, kind: "info", message: r.error} : {ok: true, kind: "info", message: r.message});
        if (r.state) render(r.state);
        input.focus();
        return;
      }
      const m = ev.target.closest("button.mark");
      if (m) {
        const r = await api("/api/return/mark", {unit: Number(m.dataset.unit), defective: m.dataset.defective === "1"});
        if (r.error) showResult({ok: false, kind: "info", message: r.error}); else render(r.state);
        input.focus();
        return;
      }
      const b = ev.target.closest("button.short, button.short-wave");
      if (!b || !confirm("Отметить недостачу: этого товара нет?")) return;
      const r = await api("/api/short", b.classList.contains("short-wave") ? {bin: b.dataset.bin, item_id: b.dataset.item}
        : {line_no: Number(b.dataset.line)});
      if (r.error) showResult({ok: false, kind: "info", message: r.error}); else { showResult(r.result); render(r.state); }
      input.focus();
    });
    const reprint = $("#reprint");
    if (reprint) reprint.addEventListener("click", async () => {
      const r = await api("/api/print/again", {});
      if (r.error) showResult({ok: false, kind: "info", message: r.error});
      else { showResult({ok: true, kind: "packed", message: "Этикетка печатается ещё раз"}); render(r.state); }
      input.focus();
    });
    const close = $("#close-handover");
    if (close) close.addEventListener("click", async () => {
      close.disabled = true;  // one press closes it: a second one while the answer comes does nothing
      let r = await api("/api/handover/close", {force: false});
      if (r.error && r._status === 409 && confirm(r.error + "\nЗакрыть без них?")) r = await api("/api/handover/close", {force: true});
      if (r.error) { showResult({ok: false, kind: "info", message: r.error}); close.disabled = false; }
      else { showResult({ok: true, kind: "done", message: "Передача закрыта, печатается " + (r.summary.supply_id ? "QR поставки" : "акт")}); render(r.state); }
    });
    const takeReturn = $("#commit-return");
    if (takeReturn) takeReturn.addEventListener("click", async () => {
      const r = await api("/api/return/commit", {});
      if (r.error) showResult({ok: false, kind: "info", message: r.error});
      else {
        const got = r.received;
        showResult({ok: true, kind: "done", message: "Возврат заказа " + got.number + " принят: годных " + got.good +
          ", брак " + got.defective});
        render(r.state);
      }
      input.focus();
    });
    const aside = $("#aside-return");
    if (aside) aside.addEventListener("click", async () => {
      const r = await api("/api/return/aside", {});
      if (r.error) showResult({ok: false, kind: "info", message: r.error});
      else { showResult({ok: true, kind: "info", message: "Возврат отложен: отсканируйте посылку снова, чтобы продолжить"}); render(r.state); }
      input.focus();
    });
    const commit = $("#commit");
    if (commit) commit.addEventListener("click", async () => {
      const r = await api("/api/tally/commit", {});
      if (r.error) showResult({ok: false, kind: "info", message: r.error});
      else { showResult({ok: true, kind: "done", message: r.message}); render(r.state); }
      input.focus();
    });
    render(JSON.parse($("#initial-state").textContent));
  }

  if (kind === "tasks") {
    const list = $("#to-hand-over");
    if (list) list.addEventListener("click", async (ev) => {
      const b = ev.target.closest("button.request-handover");
      if (!b) return;
      b.disabled = true;
      const r = await api("/api/handover/request", {account: b.dataset.account});
      let note = document.querySelector("#handover-note");
      if (!note) { note = document.createElement("p"); note.id = "handover-note"; list.after(note); }
      note.className = "msg " + (r.error ? "bad" : "good");
      note.setAttribute("role", "status");
      note.textContent = r.error || r.message;
    });
  }

  const LIST_CHANGING_SCANS = ["picked", "packed", "done", "short"];
  let reloadTimer = null;
  async function onChange(ev) {
    refreshStatus();
    if (kind === "work") {
      if (ev.result && ev.via !== "page") showResult(ev.result);  // a page scan: its page showed the answer
      const r = await api("/api/state").catch(() => null);
      if (r) render(r.state);
    } else if (kind === "tasks" && (["task", "label", "handover", "catalog", "return", "document"].includes(ev.what) ||
               (ev.what === "scan" && LIST_CHANGING_SCANS.includes(ev.kind)))) {
      // only what changes the list reloads it: not every unknown barcode or print anywhere in the warehouse
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(() => location.reload(), 300);
    }
  }
  if (window.EventSource) {
    const es = new EventSource("/events");
    es.onmessage = (m) => { try { onChange(JSON.parse(m.data)); } catch (e) { /* ignore a bad event */ } };
    es.onerror = () => refreshStatus();
  }
  setInterval(refreshStatus, 5000);
})();
