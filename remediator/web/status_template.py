"""The status page's template (kept in code so that it ships with the package as it is)."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="30">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Vigil remediator{% if s.pause.paused %} (paused){% endif %}</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; background: #fafafa; }
 h1 { font-size: 1.4em; margin: 0 0 .3em; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
 .cards { display: flex; flex-wrap: wrap; gap: 1em; }
 .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .8em 1em; min-width: 16em; }
 .bad { border-left: 6px solid #c62828; } .ok { border-left: 6px solid #2e7d32; }
 .warn { border-left: 6px solid #f9a825; }
 .big { font-size: 1.3em; font-weight: 600; }
 table { border-collapse: collapse; width: 100%; background: #fff; }
 th, td { border-bottom: 1px solid #eee; padding: .35em .5em; text-align: left; vertical-align: top; }
 th { background: #f0f0f0; } code, pre { font-family: ui-monospace, monospace; font-size: 12px; }
 pre { margin: .3em 0; white-space: pre-wrap; }
 .status-succeeded, .status-dry_run { color: #2e7d32; } .status-failed, .status-blocked { color: #c62828; }
 .status-acting, .status-pending, .status-deferred, .status-waiting, .status-unverifiable { color: #ef6c00; }
 .muted { color: #666; } nav { margin: .3em 0 1em; } nav a { margin-right: 1em; }
</style>
</head>
<body>
<h1>Vigil remediator</h1>
<div class="muted">version {{ s.version }} &middot; as of {{ s.now }}{% if s.leader %} &middot;
 leader <span id="leader">{{ s.leader }}</span>{% endif %}</div>
{% if ui.grafana_url or ui.alertmanager_url %}<nav id="links">
 {% if ui.grafana_url %}<a id="grafana-link" href="{{ ui.grafana_url }}">Grafana</a>{% endif %}
 {% if ui.alertmanager_url %}<a id="alertmanager-link" href="{{ ui.alertmanager_url }}">Alertmanager</a>{% endif %}
</nav>{% endif %}

<div class="cards">
 <section id="pause" class="card {{ 'bad' if s.pause.paused else 'ok' }}" data-paused="{{ s.pause.paused|lower }}">
  <h2>Remediation</h2>
  {% if s.pause.paused %}
  <div class="big">PAUSED</div>
  <div>reason: <span id="pause-reason">{{ s.pause.reason or 'no reason given' }}</span></div>
  <div>by: {{ s.pause.by or 'unknown' }}{% if s.pause.since %} at {{ s.pause.since }}{% endif %}</div>
  <div>until: <span id="pause-until">{{ s.pause.until or 'resumed by hand' }}</span></div>
  <div id="resume-hint">resume (admin): <code>remediator resume</code>
   or <code>POST /api/pause {"paused": false}</code></div>
  {% if admin %}<form id="resume" method="post" action="/resume"><button type="submit">Resume</button></form>
  {% endif %}
  {% else %}<div class="big">active</div>{% endif %}
  {% if s.dry_run %}<div id="dry-run" data-armed="false"><strong>DRY-RUN</strong>: decisions are recorded, nothing
   is changed; arm with <code>safety.dry_run: false</code></div>
  {% else %}<div id="armed" data-armed="true"><strong>ARMED</strong>: Vigil changes the cluster</div>{% endif %}
 </section>
 <section id="breaker" class="card {{ 'bad' if s.breaker_open else 'ok' }}" data-open="{{ s.breaker_open|lower }}">
  <h2>Circuit breaker</h2>
  <div class="big">{{ 'OPEN' if s.breaker_open else 'closed' }}</div>
  {% if s.breaker_open %}<div>since {{ s.breaker_opened_at }}; close with <code>remediator breaker-reset</code></div>
  {% endif %}
 </section>
 <section id="budget" class="card {{ 'warn' if s.budget is none else 'ok' }}">
  <h2>Disruption budget</h2>
  {% if s.budget is none %}<div>unknown: {{ s.budget_note }}</div>{% else %}
  <table><tr><th>pool</th><th>nodes out</th><th>allowed</th><th>nodes</th></tr>
  {% for b in s.budget %}<tr class="budget-row" data-pool="{{ b.pool }}"><td>{{ b.pool }}</td><td>{{ b.out }}</td>
   <td>{{ b.allowed }}</td><td>{{ b.total }}</td></tr>
  <tr><td colspan="4" class="muted">{{ b.detail }}</td></tr>{% endfor %}
  </table>{% endif %}
 </section>
</div>

<h2>Waiting <span class="muted">({{ s.queue|length }}: held back by a rail that can clear; each goes on,
 in this order, when it does)</span></h2>
{% if not s.queue %}<p id="queue-empty">Nothing waits.</p>{% else %}
<table id="queue">
<tr><th>#</th><th>incident</th><th>alert</th><th>target</th><th>pool</th><th>waits for</th><th>since</th></tr>
{% for q in s.queue %}
<tr class="queued" data-incident="{{ q.id }}" data-reason="{{ q.reason }}">
 <td>{{ q.position }}</td><td>{{ q.id }}</td><td>{{ q.alertname }}</td><td>{{ q.target or '-' }}</td>
 <td>{{ q.pool or '-' }}</td><td title="{{ q.detail }}">{{ q.reason }}</td>
 <td>{{ q.since }} ({{ q.waited_seconds|round|int }} s)</td>
</tr>
{% if q.reason in ('approval', 'window') %}<tr class="gate" data-incident="{{ q.id }}"><td></td>
 <td colspan="6">{{ q.detail }}
 {% if q.reason == 'approval' and admin %}
 <form class="approve" method="post" action="/incidents/{{ q.id }}/approve">
  <input name="reason" placeholder="reason" required maxlength="500"> <button type="submit">Approve</button></form>
 <form class="deny" method="post" action="/incidents/{{ q.id }}/deny">
  <input name="reason" placeholder="reason" required maxlength="500"> <button type="submit">Deny</button></form>
 {% elif q.reason == 'approval' %}<div>answer (admin): <code>remediator approve {{ q.id }} --reason ...</code> or
  <code>remediator deny {{ q.id }} --reason ...</code></div>{% endif %}
 </td></tr>{% endif %}{% endfor %}
</table>{% endif %}

{% if s.windows %}<h2>Maintenance windows</h2>
<table id="windows">
<tr><th>window</th><th>schedule</th><th>state</th><th>waiting for it</th></tr>
{% for w in s.windows %}<tr class="window" data-window="{{ w.name }}" data-open="{{ w.open|lower }}">
 <td>{{ w.name }}</td><td><code>{{ w.schedule }}</code> for {{ (w.duration_seconds / 3600)|round(2) }} h,
  {{ w.time_zone }}</td>
 <td>{% if w.open %}open until {{ w.closes_at }}{% else %}next opens at {{ w.opens_at }}{% endif %}</td>
 <td>{% for i in w.waiting %}incident {{ i }}{% if not loop.last %}, {% endif %}{% else %}-{% endfor %}</td>
</tr>{% endfor %}
</table>{% endif %}

<h2>Recent incidents <span class="muted">({{ s.incidents|length }} of {{ s.total_incidents }})</span></h2>
{% if not s.incidents %}<p id="no-incidents">No incidents recorded.</p>{% else %}
<table id="incidents">
<tr><th>id</th><th>alert</th><th>status</th><th>reason</th><th>rule</th><th>labels</th><th>updated</th></tr>
{% for i in s.incidents %}
<tr id="incident-{{ i.id }}" class="incident" data-status="{{ i.status }}" data-verification="{{ i.verification }}">
 <td>{{ i.id }}</td><td>{{ i.alertname }}</td>
 <td class="status-{{ i.status }}">{{ i.status }}{% if i.verification == 'unverifiable' %}
  <span class="status-unverifiable">unverifiable</span>{% endif %}</td>
 <td class="reason">{{ i.reason or '-' }}</td>
 <td>{{ i.rule or '-' }}</td>
 <td><code>{% for k, v in i.labels|dictsort %}{% if k != 'alertname' %}{{ k }}={{ v }} {% endif %}{% endfor %}
 </code></td>
 <td>{{ i.updated_at or i.received_at }}</td>
</tr>
<tr><td></td><td colspan="6">
 <details{% if loop.index <= 3 %} open{% endif %}><summary>trace and {{ (i.actions or [])|length }} action(s)</summary>
  {% if i.detail %}<div>{{ i.detail }}</div>{% endif %}
  <pre class="trace">{% for t in i.trace or [] %}{{ t }}
{% endfor %}</pre>
  {% for a in i.actions or [] %}<div class="action" data-state="{{ a.state }}">
   <code>#{{ a.seq }} {{ a.type }}({{ a.target }})</code> <span class="status-{{ a.state }}">{{ a.state }}</span>
   {%- if a.result.detail %}: {{ a.result.detail }}{% endif %}</div>
  {% endfor %}
 </details>
</td></tr>
{% endfor %}
</table>{% endif %}
</body>
</html>
"""
