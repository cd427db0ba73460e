// Headwater preview page: lists the streams from the status API every 2 s
// and plays one from the origin, over HLS with hls.js (native HLS where
// there is no Media Source Extensions, e.g. iOS Safari) or over low-latency
// DASH with dash.js (loaded the first time DASH is chosen). ?stream=live/key
// plays that stream as soon as it is live; &format=dash plays its MPD;
// &latency=<seconds> sets dash.js's live delay instead of the MPD's
// ServiceDescription target.
//
// For tests: window.__headwaterErrors collects every error ({source, type,
// details, fatal, time}); window.__headwaterStats holds the latest playback
// statistics.
(function () {
  'use strict';

  var REFRESH_MS = 2000;
  var API_TIMEOUT_MS = 5000;
  var RETRY_MS = 3000;
  var HLS_TYPE = 'application/vnd.apple.mpegurl';
  // dash.js errors it recovers from by itself: a segment download failure
  // (it retries or skips the segment) and a failed clock synchronisation (it
  // falls back to the device clock).
  var DASH_RECOVERABLE = { 27: true, 16: true };

  var errors = (window.__headwaterErrors = []);
  var stats = (window.__headwaterStats = {});

  function $(id) { return document.getElementById(id); }
  var el = {
    apiStatus: $('api-status'),
    player: $('player'),
    tbody: $('streams'),
    table: $('streams-table'),
    empty: $('empty'),
    emptyHost: $('empty-host'),
    video: $('video'),
    name: $('player-name'),
    message: $('player-message'),
    error: $('player-error'),
    url: $('stream-url'),
    latency: $('stat-latency'),
    target: $('stat-target'),
    level: $('stat-level'),
    buffer: $('stat-buffer'),
    engine: $('stat-engine'),
    sourceLabel: $('source-label'),
    formats: document.querySelectorAll('input[name="format"]'),
  };

  var params = new URLSearchParams(location.search);

  var state = {
    config: null,
    streams: new Map(), // name -> stream from the API
    rows: new Map(), // name -> {tr, cells, button}
    current: null, // name of the stream being played
    hls: null,
    dash: null, // the dash.js MediaPlayer
    dashLoad: null, // Promise of dash.js being loaded
    format: params.get('format') === 'dash' ? 'dash' : 'hls',
    liveDelay: parseFloat(params.get('latency')), // NaN: the MPD's target
    pending: params.get('stream'), // ?stream= waiting to go live
    endedShown: false,
    apiUp: null,
    retryTimer: 0,
    mediaRecoveredAt: 0,
  };

  // ---- errors --------------------------------------------------------------

  function record(source, type, details, fatal) {
    var e = { source: source, type: String(type || ''), details: String(details || ''), fatal: !!fatal, time: new Date().toISOString() };
    errors.push(e);
    if (errors.length > 200) errors.splice(0, errors.length - 200);
    if (fatal) console.error('headwater preview:', e);
    return e;
  }

  window.addEventListener('error', function (ev) {
    record('page', 'exception', ev.message + (ev.filename ? ' (' + ev.filename + ':' + ev.lineno + ')' : ''), true);
  });
  window.addEventListener('unhandledrejection', function (ev) {
    record('page', 'unhandledrejection', ev.reason && ev.reason.message ? ev.reason.message : ev.reason, true);
  });
  document.addEventListener('securitypolicyviolation', function (ev) {
    record('csp', ev.effectiveDirective, ev.blockedURI, true);
  });

  function showError(text) {
    el.error.textContent = text;
    el.error.hidden = !text;
  }

  function showMessage(text) {
    el.message.textContent = text || '';
    el.message.hidden = !text;
  }

  // ---- formatting ----------------------------------------------------------

  function fmtDuration(seconds) {
    if (!(seconds >= 0)) return '—';
    var s = Math.floor(seconds);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var ss = String(s % 60).padStart(2, '0');
    return h > 0 ? h + ':' + String(m).padStart(2, '0') + ':' + ss : m + ':' + ss;
  }

  function fmtBitrate(bps) {
    if (!(bps > 0)) return '—';
    if (bps >= 1e6) return (bps / 1e6).toFixed(bps >= 1e7 ? 1 : 2) + ' Mb/s';
    return Math.round(bps / 1e3) + ' kb/s';
  }

  function fmtSeconds(s) {
    return typeof s === 'number' && isFinite(s) && s > 0 ? s.toFixed(2) + ' s' : '—';
  }

  function resolution(s) {
    var video = (s.tracks || []).find(function (t) { return t.kind === 'video'; });
    if (video && video.width) {
      return video.width + '×' + video.height + (video.frame_rate ? ' @ ' + +video.frame_rate.toFixed(2) : '');
    }
    var r = (s.renditions || []).find(function (r) { return r.kind === 'video' && r.width; });
    if (r) return r.width + '×' + r.height;
    if ((s.tracks || []).length || (s.renditions || []).length) return 'audio only';
    return '—';
  }

  function bitrate(s) {
    if (s.ingest_bitrate > 0) return s.ingest_bitrate;
    return (s.renditions || []).reduce(function (sum, r) { return sum + (r.average_bandwidth || 0); }, 0);
  }

  // A stream is playable once every rendition has a complete segment (the
  // origin answers its playlists from then on).
  function ready(s) {
    return !!s && s.live && s.renditions && s.renditions.length > 0 &&
      s.renditions.every(function (r) { return r.segments > 0; });
  }

  // ---- origin URLs ---------------------------------------------------------

  function originBase() {
    var c = state.config || {};
    if (c.originBaseURL) return c.originBaseURL.replace(/\/+$/, '');
    var scheme = c.originScheme ? c.originScheme + ':' : location.protocol;
    return scheme + '//' + location.hostname + (c.originPort ? ':' + c.originPort : '');
  }

  function streamBase(name) {
    return originBase() + '/' + name.split('/').map(encodeURIComponent).join('/');
  }

  function streamURL(name) {
    return streamBase(name) + (state.format === 'dash' ? '/manifest.mpd' : '/index.m3u8');
  }

  // syncLocation keeps ?stream= and &format= in the address bar.
  function syncLocation(name) {
    var q = new URLSearchParams(location.search);
    if (name) q.set('stream', name);
    if (state.format === 'dash') q.set('format', 'dash');
    else q.delete('format');
    var search = '?' + q.toString().replace(/%2F/g, '/');
    if (search !== location.search) history.replaceState(null, '', search);
  }

  // ---- stream list ---------------------------------------------------------

  function makeRow(name) {
    var tr = document.createElement('tr');
    tr.dataset.stream = name;
    var th = document.createElement('th');
    th.scope = 'row';
    var badge = document.createElement('span');
    badge.className = 'badge';
    var label = document.createElement('span');
    label.className = 'stream-name';
    label.textContent = name;
    th.append(badge, ' ', label);
    tr.append(th);
    var cells = {};
    ['protocol', 'uptime', 'resolution', 'bitrate', 'viewers'].forEach(function (k) {
      var td = document.createElement('td');
      td.className = k;
      if (k === 'uptime' || k === 'bitrate' || k === 'viewers') td.classList.add('num');
      cells[k] = td;
      tr.append(td);
    });
    var td = document.createElement('td');
    td.className = 'action';
    var button = document.createElement('button');
    button.type = 'button';
    button.addEventListener('click', function () { play(name, true); });
    td.append(button);
    tr.append(td);
    return { tr: tr, badge: badge, cells: cells, button: button };
  }

  function updateRow(row, s) {
    var playing = state.current === s.name;
    row.badge.textContent = s.live ? 'live' : 'ended';
    row.badge.classList.toggle('live', !!s.live);
    row.cells.protocol.textContent = s.protocol ? s.protocol.toUpperCase() : '—';
    row.cells.uptime.textContent = s.live ? fmtDuration(s.uptime_seconds) : '—';
    row.cells.resolution.textContent = resolution(s);
    row.cells.bitrate.textContent = fmtBitrate(bitrate(s));
    row.cells.viewers.textContent = String(s.viewers || 0);
    var ok = ready(s);
    row.button.textContent = playing ? 'Playing' : ok ? 'Play' : s.live ? 'Starting…' : 'Ended';
    row.button.disabled = !ok;
    row.button.setAttribute('aria-pressed', playing ? 'true' : 'false');
    row.button.setAttribute('aria-label', (playing ? 'Playing ' : 'Play ') + s.name);
    if (playing) row.tr.setAttribute('aria-current', 'true');
    else row.tr.removeAttribute('aria-current');
  }

  function render(list) {
    state.streams = new Map(list.map(function (s) { return [s.name, s]; }));
    list.forEach(function (s, i) {
      var row = state.rows.get(s.name);
      if (!row) {
        row = makeRow(s.name);
        state.rows.set(s.name, row);
      }
      updateRow(row, s);
      if (el.tbody.children[i] !== row.tr) el.tbody.insertBefore(row.tr, el.tbody.children[i] || null);
    });
    state.rows.forEach(function (row, name) {
      if (!state.streams.has(name)) {
        row.tr.remove();
        state.rows.delete(name);
      }
    });
    el.table.hidden = list.length === 0;
    el.empty.hidden = list.length > 0;
    followStreams();
  }

  function setAPIStatus(up, detail) {
    if (state.apiUp === up) return; // announce changes only
    state.apiUp = up;
    el.apiStatus.textContent = up ? 'Status API connected · refreshing every 2 s' : 'Status API unreachable (' + detail + '), retrying…';
    el.apiStatus.classList.toggle('down', !up);
  }

  function poll() {
    var ctrl = new AbortController();
    var timer = setTimeout(function () { ctrl.abort(); }, API_TIMEOUT_MS);
    fetch('/api/v1/streams', { cache: 'no-store', signal: ctrl.signal, headers: { Accept: 'application/json' } })
      .then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      })
      .then(function (data) {
        setAPIStatus(true);
        render(Array.isArray(data.streams) ? data.streams : []);
      })
      .catch(function (err) {
        setAPIStatus(false, err.name === 'AbortError' ? 'timed out' : err.message);
      })
      .finally(function () {
        clearTimeout(timer);
        setTimeout(poll, REFRESH_MS);
      });
  }

  // followStreams reacts to the listing: starts a stream asked for with
  // ?stream= once it is live, notices when the playing one ends, and resumes
  // it when its publisher comes back.
  function followStreams() {
    if (state.pending) {
      var want = state.streams.get(state.pending);
      if (ready(want)) {
        var name = state.pending;
        state.pending = null;
        play(name, false);
      } else if (!state.current) {
        el.name.textContent = state.pending;
        showMessage('Waiting for ' + state.pending + ' to go live…');
      }
    }
    if (!state.current) return;
    var s = state.streams.get(state.current);
    if (!s || !s.live) {
      if (!state.endedShown) {
        state.endedShown = true;
        showMessage('Stream ended' + (s ? '' : ' (no longer listed)') + '.');
        el.video.classList.add('dim');
      }
    } else if (state.endedShown && ready(s)) {
      play(state.current, false); // republished
    }
  }

  // ---- playback ------------------------------------------------------------

  function stop() {
    clearTimeout(state.retryTimer);
    if (state.hls) {
      state.hls.destroy();
      state.hls = null;
    }
    if (state.dash) {
      state.dash.destroy();
      state.dash = null;
    }
    if (el.video.getAttribute('src')) {
      el.video.removeAttribute('src');
      el.video.load();
    }
  }

  function play(name, byUser) {
    stop();
    state.current = name;
    state.endedShown = false;
    el.player.hidden = false;
    if (byUser) state.pending = null;
    showError('');
    el.video.classList.remove('dim');
    var url = streamURL(name);
    el.name.textContent = name;
    el.url.textContent = url;
    el.sourceLabel.textContent = state.format === 'dash' ? 'MPD' : 'Playlist';
    syncLocation(name);
    showMessage('Loading ' + name + '…');
    state.streams.forEach(function (s) {
      var row = state.rows.get(s.name);
      if (row) updateRow(row, s);
    });

    if (state.format === 'dash') {
      playDASH(name, url);
      return;
    }
    if (window.Hls && window.Hls.isSupported()) {
      var hls = new window.Hls({ lowLatencyMode: true, backBufferLength: 30 });
      state.hls = hls;
      stats.engine = 'hls.js ' + window.Hls.version;
      hls.on(window.Hls.Events.ERROR, function (_, data) { onHlsError(hls, name, data); });
      hls.on(window.Hls.Events.MANIFEST_PARSED, function () { start(); });
      hls.loadSource(url);
      hls.attachMedia(el.video);
    } else if (el.video.canPlayType(HLS_TYPE)) {
      stats.engine = 'native HLS';
      el.video.src = url;
      start();
    } else {
      stats.engine = 'none';
      record('player', 'unsupported', 'no Media Source Extensions and no native HLS', true);
      showError('This browser cannot play HLS (no Media Source Extensions, no native HLS).');
      showMessage('');
    }
    el.engine.textContent = stats.engine;
  }

  // loadDASH loads dash.js once, from the versioned URL the page names.
  function loadDASH() {
    if (window.dashjs) return Promise.resolve();
    if (!state.dashLoad) {
      state.dashLoad = new Promise(function (resolve, reject) {
        var meta = document.querySelector('meta[name="headwater-dashjs"]');
        var script = document.createElement('script');
        script.src = meta ? meta.content : '/preview/dash.all.min.js';
        script.onload = function () { resolve(); };
        script.onerror = function () {
          state.dashLoad = null; // try again next time
          reject(new Error('dash.all.min.js did not load'));
        };
        document.head.append(script);
      });
    }
    return state.dashLoad;
  }

  function playDASH(name, url) {
    stats.engine = 'dash.js';
    el.engine.textContent = stats.engine;
    loadDASH().then(function () {
      if (state.current !== name || state.format !== 'dash' || state.dash) return; // moved on meanwhile
      var dashjs = window.dashjs;
      if (!dashjs.supportsMediaSource()) {
        stats.engine = 'none';
        record('player', 'unsupported', 'no Media Source Extensions for DASH', true);
        showError('This browser cannot play DASH (no Media Source Extensions).');
        showMessage('');
        return;
      }
      var player = dashjs.MediaPlayer().create();
      state.dash = player;
      stats.engine = 'dash.js ' + player.getVersion();
      el.engine.textContent = stats.engine;
      player.updateSettings({
        streaming: {
          // Low latency: the MPD says so (availabilityTimeComplete=false)
          // and gives the target in its ServiceDescription, which dash.js
          // applies unless liveDelay is set (&latency=).
          delay: { liveDelay: state.liveDelay > 0 ? state.liveDelay : NaN },
          liveCatchup: { enabled: true },
          // The MPD names the origin's clock (UTCTiming); should it not,
          // use it rather than dash.js's default (time.akamai.com, which
          // the page's Content-Security-Policy refuses).
          utcSynchronization: {
            defaultTimingSource: { scheme: 'urn:mpeg:dash:utc:http-iso:2014', value: streamBase(name) + '/time' },
          },
        },
      });
      player.on(dashjs.MediaPlayer.events.ERROR, function (e) { onDASHError(player, name, e); });
      player.on(dashjs.MediaPlayer.events.PLAYBACK_ERROR, function (e) {
        record('dash', 'playback', e.error && e.error.message ? e.error.message : String(e.error || ''), false);
      });
      player.initialize(el.video, url, true);
    }).catch(function (err) {
      record('player', 'missing', err.message, true);
      showError('Could not load dash.js (' + err.message + ').');
      showMessage('');
    });
  }

  function onDASHError(player, name, e) {
    var err = e.error || {};
    var fatal = !DASH_RECOVERABLE[err.code];
    record('dash', 'code ' + err.code, err.message || '', fatal);
    if (!fatal || player !== state.dash) return;
    stop();
    var s = state.streams.get(name);
    if (!s || !s.live) {
      state.endedShown = true;
      showMessage('Stream ended.');
      return;
    }
    showError('DASH error ' + err.code + (err.message ? ' (' + err.message + ')' : '') + ', retrying in ' + RETRY_MS / 1000 + ' s…');
    state.retryTimer = setTimeout(function () {
      if (state.current === name) play(name, false);
    }, RETRY_MS);
  }

  function setFormat(format) {
    if (format === state.format) return;
    state.format = format;
    el.formats.forEach(function (input) { input.checked = input.value === format; });
    syncLocation(state.current || state.pending);
    if (state.current) play(state.current, false);
  }

  el.formats.forEach(function (input) {
    input.checked = input.value === state.format;
    input.addEventListener('change', function () {
      if (input.checked) setFormat(input.value);
    });
  });

  function start() {
    var p = el.video.play();
    if (p && p.catch) {
      p.catch(function (err) {
        if (err.name === 'NotAllowedError') showMessage('Autoplay was blocked: press play.');
        else if (err.name !== 'AbortError') record('media', 'play', err.message, false);
      });
    }
  }

  function onHlsError(hls, name, data) {
    var where = data.frag ? ' ' + data.frag.type + ' sn ' + data.frag.sn + (data.part ? '.' + data.part.index : '') : '';
    var why = data.response && data.response.code ? ' HTTP ' + data.response.code : data.error && data.error.message ? ': ' + data.error.message : '';
    record('hls', data.type, data.details + where + why, data.fatal);
    if (!data.fatal || hls !== state.hls) return;
    var s = state.streams.get(name);
    if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR && Date.now() - state.mediaRecoveredAt > 10000) {
      state.mediaRecoveredAt = Date.now();
      showError('Media error (' + data.details + '), recovering…');
      hls.recoverMediaError();
      return;
    }
    stop();
    if (data.type === window.Hls.ErrorTypes.NETWORK_ERROR && s && s.live) {
      showError('Network error (' + data.details + '), retrying in ' + RETRY_MS / 1000 + ' s…');
      state.retryTimer = setTimeout(function () {
        if (state.current === name) play(name, false);
      }, RETRY_MS);
      return;
    }
    if (!s || !s.live) {
      state.endedShown = true;
      showMessage('Stream ended.');
      return;
    }
    showError('Playback failed: ' + data.details + '. Press Play to try again.');
    showMessage('');
  }

  el.video.addEventListener('playing', function () {
    showMessage('');
    if (!el.error.textContent.startsWith('Playback failed')) showError('');
  });
  el.video.addEventListener('waiting', function () {
    if (state.current && !state.endedShown) showMessage('Buffering…');
  });
  el.video.addEventListener('ended', function () {
    state.endedShown = true;
    showMessage('Stream ended.');
  });
  el.video.addEventListener('error', function () {
    var err = el.video.error;
    if (!state.current || !err || err.code === err.MEDIA_ERR_ABORTED) return;
    var player = state.hls || state.dash; // they report and recover their own
    record('media', 'code ' + err.code, err.message, !player);
    if (!player) showError('Playback failed: ' + (err.message || 'media error ' + err.code) + '.');
  });

  // ---- statistics ----------------------------------------------------------

  function bufferAhead(v) {
    for (var i = 0; i < v.buffered.length; i++) {
      if (v.buffered.start(i) <= v.currentTime + 0.1 && v.currentTime <= v.buffered.end(i)) {
        return v.buffered.end(i) - v.currentTime;
      }
    }
    return 0;
  }

  function updateStats() {
    var v = el.video;
    var hls = state.hls;
    var dash = state.dash;
    stats.stream = state.current;
    stats.format = state.current ? state.format : null;
    stats.playbackRate = v.playbackRate;
    stats.currentTime = v.currentTime;
    stats.buffer = bufferAhead(v);
    stats.latency = null;
    stats.targetLatency = null;
    stats.level = null;
    stats.lowLatency = null;
    if (dash) {
      if (dash.isReady()) {
        var lat = dash.getCurrentLiveLatency();
        stats.latency = isFinite(lat) && lat > 0 ? lat : null;
        stats.targetLatency = dash.getTargetLiveDelay() || null;
        stats.lowLatency = dash.getLowLatencyModeEnabled();
        var rep = dash.getCurrentRepresentationForType('video');
        if (rep) {
          var reps = dash.getRepresentationsByType('video') || [];
          stats.level = (rep.height ? rep.height + 'p' : rep.id) + ' · ' + fmtBitrate(rep.bandwidth) +
            (reps.length > 1 ? (dash.getSettings().streaming.abr.autoSwitchBitrate.video ? ' (auto)' : ' (manual)') : '');
        }
      }
    } else if (hls) {
      stats.latency = hls.latency;
      stats.targetLatency = hls.targetLatency;
      var lv = hls.levels && hls.levels[hls.currentLevel];
      if (lv) {
        stats.level = (lv.height ? lv.height + 'p' : 'level ' + hls.currentLevel) + ' · ' + fmtBitrate(lv.bitrate) +
          (hls.levels.length > 1 ? (hls.autoLevelEnabled ? ' (auto)' : ' (manual)') : '');
      }
    } else if (state.current && v.getStartDate) {
      var start = v.getStartDate().getTime(); // Safari: EXT-X-PROGRAM-DATE-TIME of the first segment
      if (isFinite(start)) stats.latency = (Date.now() - start) / 1000 - v.currentTime;
      if (v.videoHeight) stats.level = v.videoHeight + 'p';
    }
    el.latency.textContent = fmtSeconds(stats.latency);
    el.target.textContent = fmtSeconds(stats.targetLatency);
    el.level.textContent = stats.level || '—';
    el.buffer.textContent = state.current ? stats.buffer.toFixed(2) + ' s' : '—';
  }

  // ---- start ---------------------------------------------------------------

  el.emptyHost.textContent = location.hostname;
  el.player.hidden = !state.pending; // shown once there is something to play
  if (state.pending) {
    el.name.textContent = state.pending;
    showMessage('Waiting for ' + state.pending + ' to go live…');
  }
  if (!window.Hls) record('player', 'missing', 'hls.min.js did not load', false);

  fetch('/preview/config.json', { cache: 'no-cache' })
    .then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    })
    .catch(function (err) {
      record('page', 'config', err.message, true);
      showError('Could not load /preview/config.json (' + err.message + '); assuming the origin is on port 8080.');
      return { originPort: 8080 };
    })
    .then(function (cfg) {
      state.config = cfg;
      poll();
      setInterval(updateStats, 500);
    });
})();
