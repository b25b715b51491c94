#!/usr/bin/env python3
"""A real Home Assistant Core against a real glimpse: what an HA user meets.

Starts Home Assistant (its `hass` from the venv given), onboards a user and
adds the MQTT integration through the REST API, as a user's browser would,
then starts glimpse on the demo config (the bundled shapes model and clip,
its embedded broker) and checks, through Home Assistant's REST API only:

- the device's entities appear (sensors, the rule's binary_sensor, the
  snapshot image, the ask and add-rule texts, the analysis switch), with no
  MQTT discovery errors in Home Assistant's log;
- a description reaches the "Last description" sensor, the red rule's
  binary_sensor turns on, a zone's occupancy binary_sensor turns on and
  off with the clip, and the snapshot image serves a JPEG;
- a question typed into the Ask text is answered on the Answer sensor;
- a rule added with the Add rule text gets its binary_sensor and a remove
  button, and pressing the button removes both entities;
- the Analysis switch pauses the camera (activity "paused") and resumes it;
- stopping glimpse makes its entities unavailable.

Usage: check.py HASS_PYTHON GLIMPSE_BIN REPO WORKDIR
Exit status 0 when every check passed; the log of each program is left in
WORKDIR. Run by tests/home_assistant.rs.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HASS_PYTHON, GLIMPSE, REPO, WORK = sys.argv[1:5]
T0 = time.monotonic()


def log(message):
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HA_PORT, MQTT_PORT = free_port(), free_port()
BASE = f"http://127.0.0.1:{HA_PORT}"
CLIENT_ID = f"{BASE}/"
TOKEN = None


def request(method, path, body=None, form=False, raw=False):
    headers = {}
    data = None
    if TOKEN:
        headers["Authorization"] = f"Bearer {TOKEN}"
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    req = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as response:
        payload = response.read()
        return (response.headers.get("Content-Type"), payload) if raw else json.loads(payload or b"null")


def wait_for(what, check, within=60.0, every=0.5):
    """Polls `check` until it returns something truthy; fails after `within`."""
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
            if isinstance(e, urllib.error.HTTPError) and e.code not in (404, 502, 503):
                raise
        else:
            if last:
                log(f"ok: {what}")
                return last
        time.sleep(every)
    fail(f"{what}: not within {within:.0f}s (last: {last!r})")


def fail(message):
    log(f"FAILED: {message}")
    try:
        for entity_id, s in sorted(states().items()):
            if "glimpse" in entity_id:
                log(f"  {entity_id} = {s['state']!r} {json.dumps(s['attributes'])[:300]}")
    except Exception as e:  # the failure is what matters
        log(f"  (states unavailable: {e})")
    if os.environ.get("GLIMPSE_HA_KEEP"):
        # For a person to look: Home Assistant and glimpse stay up.
        log(f"kept for {os.environ['GLIMPSE_HA_KEEP']} s: {BASE}, token {TOKEN}, broker port {MQTT_PORT}")
        time.sleep(float(os.environ["GLIMPSE_HA_KEEP"]))
    raise SystemExit(1)


def states():
    return {s["entity_id"]: s for s in request("GET", "/api/states")}


def entity(name):
    """The entity of glimpse's demo device whose friendly name ends with `name`."""
    for entity_id, s in states().items():
        if s["attributes"].get("friendly_name", "") == f"glimpse demo {name}":
            return s
    return None


def state_of(name):
    s = entity(name)
    return s and s["state"]


def service(domain, action, data):
    return request("POST", f"/api/services/{domain}/{action}", data)


def start_home_assistant():
    config = os.path.join(WORK, "ha-config")
    os.makedirs(config, exist_ok=True)
    # The least that serves the REST API, onboarding and config flows; MQTT
    # is added through its config flow below, as the UI does.
    with open(os.path.join(config, "configuration.yaml"), "w") as f:
        f.write(
            "homeassistant:\n  name: glimpse-test\n  unit_system: metric\n  time_zone: UTC\n"
            "  latitude: 0\n  longitude: 0\n  elevation: 0\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {HA_PORT}\n"
            "api:\nonboarding:\nconfig:\nlogger:\n  default: warning\n"
        )
    out = open(os.path.join(WORK, "home-assistant.log"), "w")
    process = subprocess.Popen(
        [HASS_PYTHON, "-m", "homeassistant", "-c", config, "--skip-pip"],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    wait_for("Home Assistant serves its API", lambda: request("GET", "/api/onboarding"), within=120)
    return process


def onboard():
    global TOKEN
    code = request(
        "POST",
        "/api/onboarding/users",
        {
            "client_id": CLIENT_ID,
            "name": "glimpse",
            "username": "glimpse",
            "password": "glimpse-test-password",
            "language": "en",
        },
    )["auth_code"]
    token = request(
        "POST",
        "/auth/token",
        {"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID},
        form=True,
    )
    TOKEN = token["access_token"]
    log("ok: onboarded, token taken")


def add_mqtt():
    flow = request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
    # The user step may show a menu or the broker form directly.
    for _ in range(4):
        if flow["type"] == "create_entry":
            log("ok: MQTT integration added")
            return
        if flow["type"] == "menu":
            flow = request(
                "POST",
                f"/api/config/config_entries/flow/{flow['flow_id']}",
                {"next_step_id": "broker" if "broker" in flow["menu_options"] else flow["menu_options"][0]},
            )
            continue
        if flow["type"] == "form":
            flow = request(
                "POST",
                f"/api/config/config_entries/flow/{flow['flow_id']}",
                {"broker": "127.0.0.1", "port": MQTT_PORT},
            )
            continue
        break
    fail(f"the MQTT config flow ended with {flow}")


def start_glimpse():
    with open(os.path.join(REPO, "config", "glimpse.toml")) as f:
        text = f.read()
    models = os.path.join(REPO, "models")
    text = text.replace('"../models/', f'"{models}/')
    text = text.replace('listen = "127.0.0.1:1883"', f'listen = "127.0.0.1:{MQTT_PORT}"')
    state = os.path.join(WORK, "glimpse-state")
    text = text.replace("[service]\n", f'[service]\nstate_dir = "{state}"\n', 1)
    text = text.replace("stats_interval_s = 60", "stats_interval_s = 5")
    # The demo config holds back most descriptions of the demo model (it is
    # unsure of them); this test is about descriptions reaching the Last
    # description sensor, so it publishes them all.
    text, n = re.subn(r"^min_confidence = [0-9.]+$", "min_confidence = 0.0", text, flags=re.M)
    if n != 1:
        fail(f"the demo config should set min_confidence once, found {n}")
    # A zone over the top-left quarter, where the demo clip's red square
    # sits from 3 s to 28 s (the blue circle's edge reaches in until 42 s).
    text += '\n[cameras.demo.zones.top_left]\npoints = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]\n'
    config = os.path.join(WORK, "glimpse.toml")
    with open(config, "w") as f:
        f.write(text)
    out = open(os.path.join(WORK, "glimpse.log"), "w")
    return subprocess.Popen([GLIMPSE, "run", "--config", config], stdout=out, stderr=subprocess.STDOUT)


def main():
    ha = start_home_assistant()
    glimpse = None
    try:
        onboard()
        glimpse = start_glimpse()
        # The embedded broker must be up before the MQTT flow tests it.
        wait_for("glimpse's embedded broker listens", lambda: socket.create_connection(("127.0.0.1", MQTT_PORT), 1).close() or True)
        add_mqtt()
        names = [
            "Last event", "Last description", "Activity", "Answer", "Ask", "Add rule",
            "Analysis", "Snapshot", "Event", "Answer event", "Frames per second",
            "is there a red shape?", "Zone top_left",
        ]
        wait_for("every entity of the demo device", lambda: all(entity(n) for n in names), within=60)
        wait_for(
            "a description on the Last description sensor",
            lambda: state_of("Last description") not in (None, "unknown", "unavailable", ""),
            within=90,
        )
        wait_for("the red rule's binary_sensor on", lambda: state_of("is there a red shape?") == "on", within=float(os.environ.get("GLIMPSE_HA_RULE_WAIT", 120)))
        # The zone's occupancy binary_sensor follows the zone: on while a
        # shape is in it, off once it is empty (the clip loops every 60 s).
        zone = entity("Zone top_left")
        if zone["attributes"].get("device_class") != "occupancy":
            fail(f"the zone's binary_sensor: {zone}")
        wait_for("the zone's binary_sensor on", lambda: state_of("Zone top_left") == "on", within=70)
        wait_for("the zone's binary_sensor off", lambda: state_of("Zone top_left") == "off", within=70)
        log("ok: the zone's binary_sensor turned on and off with the clip")
        image = entity("Snapshot")["entity_id"]
        content_type, jpeg = request("GET", f"/api/image_proxy/{image}", raw=True)
        if not (content_type.startswith("image/jpeg") and jpeg[:3] == b"\xff\xd8\xff"):
            fail(f"the snapshot image is not a JPEG: {content_type}, {jpeg[:8]!r}")
        log(f"ok: the snapshot image serves a JPEG of {len(jpeg)} bytes")

        # Ask from the UI: the Ask text entity.
        before = state_of("Answer")
        service("text", "set_value", {"entity_id": entity("Ask")["entity_id"], "value": "what is there?"})
        answer = wait_for(
            "the answer on the Answer sensor",
            lambda: (s := state_of("Answer")) not in (None, before, "unknown", "") and s,
            within=90,
        )
        log(f"answer: {answer!r}")
        if answer.startswith("error"):
            fail(f"the question got an error answer: {answer}")

        # A rule added from Home Assistant, then removed with its button.
        service("text", "set_value", {"entity_id": entity("Add rule")["entity_id"], "value": "is there a blue shape?"})
        # Available (not "unavailable"): it reads the availability that was
        # published before it existed.
        wait_for(
            "the added rule's binary_sensor, available",
            lambda: state_of("is there a blue shape?") in ("on", "off", "unknown"),
            within=30,
        )
        button = wait_for("its remove button", lambda: entity("Remove rule: is there a blue shape?"), within=30)
        service("button", "press", {"entity_id": button["entity_id"]})
        wait_for(
            "the removed rule's entities gone",
            lambda: not entity("is there a blue shape?") and not entity("Remove rule: is there a blue shape?"),
            within=30,
        )
        if not entity("is there a red shape?"):
            fail("the config's rule went with it")

        # Pause and resume.
        switch = entity("Analysis")["entity_id"]
        service("switch", "turn_off", {"entity_id": switch})
        wait_for("the switch off and the activity paused", lambda: state_of("Analysis") == "off" and state_of("Activity") == "paused", within=30)
        service("switch", "turn_on", {"entity_id": switch})
        wait_for("analysis resumed", lambda: state_of("Analysis") == "on" and state_of("Activity") != "paused", within=30)

        # A normal stop: Home Assistant shows the device unavailable.
        log_path = os.path.join(WORK, "home-assistant.log")
        before_stop = os.path.getsize(log_path)
        glimpse.send_signal(signal.SIGTERM)
        if glimpse.wait(timeout=30) != 0:
            fail(f"glimpse exited with {glimpse.returncode}")
        glimpse = None
        wait_for("the entities unavailable after the stop", lambda: state_of("Last description") == "unavailable", within=30)

        with open(log_path, "rb") as f:
            running, stopping = f.read(before_stop).decode(errors="replace"), f.read().decode(errors="replace")
        # Losing the connection at the stop is expected: the broker is
        # glimpse's embedded one. Home Assistant says "The connection was
        # lost", and paho adds "Connection reset by peer" when the socket is
        # reset rather than closed (it held unread bytes, e.g. a ping, when
        # the process exited; one of two CI runs here saw it). Before the stop
        # nothing of the kind is allowed.
        def mqtt_problem(l):
            return "mqtt" in l.lower() and ("ERROR" in l or "WARNING" in l)

        problems = [l + "\n" for l in running.splitlines() if mqtt_problem(l)]
        problems += [
            l + "\n"
            for l in stopping.splitlines()
            if mqtt_problem(l) and "The connection was lost" not in l and "Connection reset by peer" not in l
        ]
        if problems:
            fail("Home Assistant logged MQTT problems:\n" + "".join(problems[:20]))
        log("every check passed")
    finally:
        if glimpse:
            glimpse.kill()
        ha.terminate()
        try:
            ha.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ha.kill()


if __name__ == "__main__":
    main()
