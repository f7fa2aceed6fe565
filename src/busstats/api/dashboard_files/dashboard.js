// The dashboard: reads the JSON API (country-stats, jobs) and draws charts, a table and a
// grid of dates x cities. Plain JS, no build step; plotly.js is served by the service.
"use strict";

const MAX_GRID_DAYS = 62; // one request per date with a job: keep the grid to two months
const MAX_JOB_PAGES = 10;
const POLL_MS = 1000;
const POLL_LIMIT = 300; // stop following a job after five minutes
const METRICS = [
  { div: "chart-buses", field: "buses_started", title: "Buses started" },
  { div: "chart-passengers", field: "total_passengers", title: "Passengers" },
  { div: "chart-delay", field: "average_delay_minutes", title: "Average delay (minutes)" },
];
const integer = new Intl.NumberFormat("en-US");
const $ = (id) => document.getElementById(id);
let incompleteDates = new Map(); // date -> reason, from the last country-stats answer

async function getJson(url, init) {
  const response = await fetch(url, init);
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null; // not JSON: the status says enough
  }
  if (!response.ok) {
    const reason = body && body.error ? body.error : response.statusText;
    throw new Error(`${response.status}: ${reason}`);
  }
  return body;
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function addDays(day, count) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + count);
  return isoDay(date);
}

function daysBetween(first, last) {
  const days = [];
  for (let day = first; day <= last; day = addDays(day, 1)) days.push(day);
  return days;
}

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

// The last 7 days up to the newest date a job ingested, else today-7 .. today-1.
async function defaultRange() {
  try {
    const page = await getJson("jobs?limit=100");
    const days = page.jobs
      .filter((job) => job.status === "succeeded" || job.status === "partial")
      .map((job) => job.date)
      .sort();
    if (days.length) {
      const last = days[days.length - 1];
      return [addDays(last, -6), last];
    }
  } catch {
    // no jobs to go by: fall through to last week
  }
  const today = isoDay(new Date());
  return [addDays(today, -7), addDays(today, -1)];
}

function drawCharts(stats, days) {
  const countries = [...new Set(stats.map((row) => row.country))].sort();
  for (const metric of METRICS) {
    const traces = countries.map((country) => {
      const rows = stats.filter((row) => row.country === country);
      return {
        name: country,
        x: rows.map((row) => row.date),
        y: rows.map((row) => row[metric.field]),
        mode: "lines+markers",
        type: "scatter",
      };
    });
    const accidents = stats.filter((row) => row.accident);
    traces.push({
      name: "accident",
      x: accidents.map((row) => row.date),
      y: accidents.map((row) => row[metric.field]),
      text: accidents.map((row) => `accident in ${row.country}`),
      mode: "markers",
      type: "scatter",
      marker: { symbol: "x-thin-open", size: 9, color: "#e12d39", line: { width: 2 } },
      hoverinfo: "text+x",
    });
    const layout = {
      title: { text: metric.title, font: { size: 14 } },
      margin: { l: 60, r: 10, t: 40, b: 40 },
      legend: { orientation: "h", y: -0.15 },
      xaxis: { type: "date", range: [`${addDays(days[0], -1)} 12:00`, `${days.at(-1)} 12:00`] },
      yaxis: { rangemode: "tozero" },
    };
    if (days.length <= 31) Object.assign(layout.xaxis, { dtick: 86400000, tickformat: "%b %d" });
    Plotly.react($(metric.div), traces, layout, { displaylogo: false, responsive: true });
  }
}

function fillTable(stats) {
  const body = $("stats").tBodies[0];
  body.replaceChildren();
  for (const row of stats) {
    const tr = element("tr");
    tr.append(
      element("td", {}, row.date),
      element("td", {}, row.country),
      element("td", { class: "num" }, integer.format(row.buses_started)),
      element("td", { class: "num" }, integer.format(row.total_passengers)),
      element("td", { class: "num" }, row.average_delay_minutes.toFixed(2)),
      element("td", { class: "accident" }, row.accident ? "yes" : ""),
      element("td", { class: "num" }, String(row.cities_counted)),
    );
    body.append(tr);
  }
}

// For each date, the latest job (the jobs list is newest first) and its full record.
async function latestJobRecords(first, last) {
  const latest = new Map();
  let url = `jobs?from=${first}&to=${last}&limit=1000`;
  for (let pages = 0; url && pages < MAX_JOB_PAGES; pages += 1) {
    const page = await getJson(url);
    for (const job of page.jobs) if (!latest.has(job.date)) latest.set(job.date, job);
    url = page.next ? page.next.replace(/^\//, "") : null;
  }
  const records = await Promise.all(
    [...latest.values()].map((job) => getJson(`jobs/${job.job_id}`)),
  );
  return new Map(records.map((record) => [record.date, record]));
}

async function drawGrid(first, last) {
  const incomplete = incompleteDates;
  let days = daysBetween(first, last);
  $("grid-message").textContent = "";
  if (days.length > MAX_GRID_DAYS) {
    days = days.slice(-MAX_GRID_DAYS);
    $("grid-message").textContent = `The grid shows the last ${MAX_GRID_DAYS} dates of the range.`;
  }
  const records = await latestJobRecords(days[0], days.at(-1));
  const cities = new Map();
  for (const record of records.values()) {
    for (const city of record.cities) cities.set(city.city_id, city);
  }
  const rows = [...cities.values()].sort(
    (a, b) => a.country.localeCompare(b.country) || a.city_name.localeCompare(b.city_name),
  );

  const head = element("tr");
  head.append(element("th"));
  for (const day of days) {
    const record = records.get(day);
    const th = element("th", { class: "day", "data-date": day });
    th.append(element("div", {}, day.slice(5)));
    th.append(element("div", { class: "job-status" }, record ? record.status : "no job"));
    if (incomplete.has(day)) {
      th.classList.add("incomplete");
      th.title = incomplete.get(day);
      th.append(element("div", { class: "incomplete-mark" }, "incomplete"));
    }
    const button = element("button", { type: "button", "data-date": day });
    button.textContent = record ? "Re-ingest" : "Ingest";
    button.addEventListener("click", () => ingest(day));
    th.append(button);
    head.append(th);
  }
  const table = $("grid");
  table.replaceChildren(head);
  for (const city of rows) {
    const tr = element("tr");
    tr.append(element("th", { class: "city" }, `${city.city_name} (${city.country})`));
    for (const day of days) {
      const report = records.get(day)?.cities.find((c) => c.city_id === city.city_id);
      const status = report ? report.status : "none";
      const td = element("td", { class: status, "data-city": city.city_name, "data-date": day });
      td.dataset.status = status;
      td.title = `${city.city_name}, ${day}: ${report ? status : "no job"}`;
      if (report?.error) td.title += ` (${report.error})`;
      tr.append(td);
    }
    table.append(tr);
  }
  if (!rows.length) $("grid-message").textContent = "No job has ingested a date of this range yet.";
}

async function ingest(day) {
  try {
    const accepted = await getJson(`process-request?date=${day}`, { method: "POST" });
    say(`Ingest of ${day} queued as job ${accepted.job_id}.`);
    for (let polls = 0; polls < POLL_LIMIT; polls += 1) {
      const job = await getJson(`jobs/${accepted.job_id}`);
      if (["succeeded", "partial", "failed"].includes(job.status)) {
        await show();
        say(`Ingest of ${day} ended ${job.status}${job.error ? `: ${job.error}` : ""}.`);
        return;
      }
      await drawGrid($("from").value, $("to").value).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    say(`Ingest of ${day} is still running; its job is ${accepted.job_id}.`);
  } catch (error) {
    say(`Ingest of ${day} failed: ${error.message}`, true);
  }
}

async function show() {
  const first = $("from").value;
  const last = $("to").value;
  history.replaceState(null, "", `?from=${first}&to=${last}`);
  $("csv").href = `country-stats?from=${first}&to=${last}&format=csv`;
  say("Loading…");
  incompleteDates = new Map();
  try {
    const answer = await getJson(`country-stats?from=${first}&to=${last}`);
    incompleteDates = new Map(answer.incomplete_dates.map((d) => [d.date, d.reason]));
    fillTable(answer.stats);
    if (answer.stats.length) {
      drawCharts(answer.stats, daysBetween(first, last));
      say("");
    } else {
      METRICS.forEach((metric) => Plotly.purge($(metric.div)));
      say(`No data from ${first} to ${last}.`);
    }
  } catch (error) {
    fillTable([]);
    METRICS.forEach((metric) => Plotly.purge($(metric.div)));
    say(`The statistics could not be read: ${error.message}`, true);
  }
  if (first && last && first <= last) {
    try {
      await drawGrid(first, last);
    } catch (error) {
      $("grid").replaceChildren();
      $("grid-message").textContent = `The jobs could not be read: ${error.message}`;
    }
  } else {
    $("grid").replaceChildren();
  }
  document.body.dataset.rendered = `${first}..${last}`; // for tests and screenshots
}

async function start() {
  const query = new URLSearchParams(location.search);
  let [first, last] = [query.get("from"), query.get("to")];
  if (!first || !last) [first, last] = await defaultRange();
  $("from").value = first;
  $("to").value = last;
  $("range").addEventListener("submit", (event) => {
    event.preventDefault();
    show();
  });
  await show();
}

start();
