"""The actions of the procedural motions of ``utils.synthetic``: each writes per-frame controls and the verb phrases
its captions are made of (walk, run, sidestep, turn, jump, wave, kick, sit, bow, squat, clap, raise arms, punch,
stand), plus sequences of actions and walking while waving or clapping.
"""

from __future__ import annotations

import numpy as np

from utils.synthetic_captions import _CARDINALS, _Segment
from utils.synthetic_controls import (
    _SIDE,
    FPS,
    LEFT,
    RIGHT,
    _bump,
    _ramp,
    _rest_controls,
    _set_arm,
    _Style,
)

# ---------------------------------------------------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------------------------------------------------

def _frames(seconds: float) -> int:
    return int(round(seconds * FPS))


def _gait(c: dict[str, np.ndarray], on: np.ndarray, cadence: float, duty: float, lift: float,
          reach: float = 0.995, swing: float = 0.0, weight: np.ndarray | None = None) -> None:
    """Step on the frames where ``on``; ``weight`` (n,) scales the natural arm swing (default: ``on``)."""
    on = np.asarray(on, dtype=bool)
    weight = on.astype(float) if weight is None else weight
    c["gait"][on] = 1.0
    c["cadence"][on] = cadence
    c["duty"][on] = duty
    c["lift"][on] = lift
    c["reach"][on] = reach
    c["swing"] += weight * swing


def _walk(rng: np.random.Generator, style: _Style, n: int, start: bool, stop: bool, speed: str | None = None,
          direction: str | None = None, curve: str | None = None) -> _Segment:
    speed = speed or rng.choice(["slow", "normal", "normal", "fast"])
    direction = direction or ("backward" if rng.random() < 0.2 else "forward")
    if direction == "backward":
        speed = "slow" if speed == "fast" else speed
        curve = "none"
    curve = curve or rng.choice(["none", "none", "none", "left", "right"])
    v, cadence = {"slow": (rng.uniform(0.55, 0.8), rng.uniform(0.72, 0.82)),
                  "normal": (rng.uniform(0.95, 1.25), rng.uniform(0.88, 0.98)),
                  "fast": (rng.uniform(1.55, 1.85), rng.uniform(1.05, 1.15))}[speed]
    if direction == "backward":
        v *= 0.75
    c = _rest_controls(n, style)
    w = np.ones(n)
    if start:
        w *= _ramp(n, 0, 12)
    if stop:
        w *= 1.0 - _ramp(n, n - 14, n - 2)
    c["fwd"] = w * v * (1.0 if direction == "forward" else -1.0)
    # A stopping walker keeps stepping until the body has come to rest.
    on = np.arange(n) < (n - 3 if stop else n)
    swing = style.swing * {"slow": 0.8, "normal": 1.0, "fast": 1.2}[speed]
    _gait(c, on, cadence, 0.6, rng.uniform(0.07, 0.11), swing=swing, weight=w)
    c["spine"][:, 0] += w * (0.05 if speed == "fast" else 0.0) - w * (0.06 if direction == "backward" else 0.0)
    turned = 0.0
    if curve != "none":
        rate = np.radians(rng.uniform(25.0, 55.0)) * (1.0 if curve == "left" else -1.0)
        c["yaw_rate"] = w * rate
        turned = abs(np.degrees(np.sum(c["yaw_rate"]) / FPS))
    steps = int(round(np.sum(c["gait"]) * cadence * 2.0 / FPS))
    adverb = {"slow": ["slowly", "at a slow pace", "leisurely"], "normal": ["", "at a normal pace", "steadily"],
              "fast": ["quickly", "fast", "briskly"]}[speed]
    phrases = []
    if direction == "backward":
        for a in adverb:
            phrases += [f"walks backwards {a}".strip(), f"walks backward {a}".strip(), f"steps backwards {a}".strip()]
        if speed == "slow":
            phrases.append("slowly walks backwards")
    elif curve != "none":
        side = curve
        if turned >= 300:
            sense = "counterclockwise" if side == "left" else "clockwise"
            phrases += [f"walks in a circle {sense}", f"walks around in a circle to the {side}",
                        f"walks in a full circle turning {side}"]
        elif turned >= 140:
            phrases += [f"walks in a half circle to the {side}", f"walks in a big curve to the {side}",
                        f"walks forward and curves around to the {side}"]
        else:
            phrases += [f"walks forward while curving to the {side}", f"walks in a curve to the {side}",
                        f"walks forward and veers to the {side}"]
        if speed != "normal":
            phrases = [f"{'slowly' if speed == 'slow' else 'quickly'} {p}" for p in phrases]
    else:
        for a in adverb:
            phrases += [f"walks forward {a}".strip(), f"walks straight ahead {a}".strip()]
        phrases += {"slow": ["slowly walks forward", "strolls forward slowly"],
                    "normal": ["walks forward", "is walking forward"],
                    "fast": ["quickly walks forward", "walks forward at a fast pace", "hurries forward"]}[speed]
        if 2 <= steps <= 12 and not start and not stop:
            phrases.append(f"takes about {_CARDINALS[steps]} steps forward")
    return _Segment(f"walk_{direction}_{speed}" + ("" if curve == "none" else f"_curve_{curve}"), c, phrases)


def _run(rng: np.random.Generator, style: _Style, n: int, start: bool, stop: bool) -> _Segment:
    kind = rng.choice(["jog", "run", "sprint"])
    v, cadence, duty = {"jog": (rng.uniform(1.9, 2.4), rng.uniform(1.25, 1.35), 0.45),
                        "run": (rng.uniform(2.6, 3.3), rng.uniform(1.35, 1.45), 0.38),
                        "sprint": (rng.uniform(3.8, 4.6), rng.uniform(1.5, 1.6), 0.32)}[kind]
    c = _rest_controls(n, style)
    w = np.ones(n)
    if start:
        w *= _ramp(n, 0, 14)
    if stop:
        w *= 1.0 - _ramp(n, n - 16, n - 2)
    c["fwd"] = w * v
    _gait(c, np.arange(n) < (n - 3 if stop else n), cadence, duty, rng.uniform(0.14, 0.22), reach=0.95, weight=w)
    c["spine"][:, 0] += w * (0.12 + 0.05 * (kind == "sprint"))
    # Runners carry their arms bent and swing them from the shoulder.
    _set_arm(c, LEFT, w, flex=0.1, abd=0.15, elbow=1.5, pole="back")
    _set_arm(c, RIGHT, w, flex=0.1, abd=0.15, elbow=1.5, pole="back")
    c["swing"] += w * (0.55 + 0.15 * (kind == "sprint"))
    phrases = {"jog": ["jogs forward", "jogs", "is jogging forward", "runs slowly forward", "jogs straight ahead"],
               "run": ["runs forward", "runs", "is running forward", "runs straight ahead"],
               "sprint": ["sprints forward", "runs forward very fast", "sprints", "dashes forward",
                          "runs quickly forward"]}[kind]
    return _Segment(f"run_{kind}", c, phrases)


def _sidestep(rng: np.random.Generator, style: _Style, n: int) -> _Segment:
    side = rng.choice(["left", "right"])
    c = _rest_controls(n, style)
    w = _bump(n, 0, 8, n - 10, n - 2)
    c["lat"] = w * rng.uniform(0.3, 0.5) * (1.0 if side == "left" else -1.0)
    _gait(c, np.arange(n) < n - 8, rng.uniform(0.8, 0.95), 0.7, 0.06)
    phrases = [f"sidesteps to the {side}", f"steps sideways to the {side}", f"shuffles sideways to the {side}",
               f"moves sideways to the {side}", f"side steps to the {side}"]
    return _Segment(f"sidestep_{side}", c, phrases)


def _turn(rng: np.random.Generator, style: _Style, angle: int | None = None, side: str | None = None) -> _Segment:
    angle = angle or int(rng.choice([90, 180, 180, 360]))
    side = side or rng.choice(["left", "right"])
    duration = {90: rng.uniform(1.0, 1.6), 180: rng.uniform(1.4, 2.2), 360: rng.uniform(1.2, 2.0)}[angle]
    lead, tail = _frames(rng.uniform(0.3, 0.6)), _frames(rng.uniform(0.4, 0.8))
    turn_frames = _frames(duration)
    n = lead + turn_frames + tail
    c = _rest_controls(n, style)
    profile = np.sin(np.pi * np.clip((np.arange(n) - lead) / turn_frames, 0, 1)) ** 2
    profile[: lead] = 0.0
    profile[lead + turn_frames:] = 0.0
    rate = profile / max(profile.sum() / FPS, 1e-6) * np.radians(angle)
    c["yaw_rate"] = rate * (1.0 if side == "left" else -1.0)
    stepping = (np.arange(n) >= lead) & (np.arange(n) < lead + turn_frames)
    _gait(c, stepping, 1.7 if angle == 360 else 1.3, 0.6, 0.05)
    c["head"][:, 1] += 0.3 * profile / max(profile.max(), 1e-6) * (1.0 if side == "left" else -1.0)
    if angle == 90:
        phrases = [f"turns {side}", f"turns to the {side}", f"turns 90 degrees to the {side}",
                   f"makes a quarter turn to the {side}", f"turns ninety degrees to the {side}"]
    elif angle == 180:
        phrases = ["turns around", f"turns around to the {side}", f"turns 180 degrees to the {side}",
                   f"does a half turn to the {side}", "turns around to face the other way"]
    else:
        sense = "counterclockwise" if side == "left" else "clockwise"
        phrases = [f"spins around to the {side}", "spins around once", f"turns a full circle {sense}",
                   f"does a full turn to the {side}", f"spins in place {sense}"]
    return _Segment(f"turn_{angle}_{side}", c, phrases)


def _jump(rng: np.random.Generator, style: _Style) -> _Segment:
    count = int(rng.choice([1, 1, 2, 3]))
    forward = rng.random() < 0.4
    high = rng.random() < 0.3
    height = rng.uniform(0.3, 0.4) if high else rng.uniform(0.12, 0.25)
    flight = max(2, _frames(2.0 * np.sqrt(2.0 * height / 9.81)))
    crouch, land, rest = _frames(0.4), _frames(0.3), _frames(rng.uniform(0.25, 0.5))
    lead = _frames(rng.uniform(0.3, 0.6))
    n = lead + count * (crouch + flight + land + rest) + _frames(0.3)
    c = _rest_controls(n, style)
    t0 = lead
    for _ in range(count):
        take_off, touch = t0 + crouch, t0 + crouch + flight
        dip = _bump(n, t0, t0 + crouch - 3, t0 + crouch - 3, take_off) * -0.18
        absorb = _bump(n, touch, touch + 3, touch + 3, touch + land + rest) * -0.14
        s = np.clip((np.arange(n) - take_off) / flight, 0.0, 1.0)
        in_air = (np.arange(n) >= take_off) & (np.arange(n) < touch)
        c["pelvis"][:, 1] += dip + absorb + np.where(in_air, 4.0 * height * s * (1.0 - s), 0.0)
        c["flight"][in_air] = 1.0
        c["lift"][in_air] = height
        if forward:
            c["fwd"][in_air] = rng.uniform(0.35, 0.7) / (flight / FPS)
        swing_back = _bump(n, t0, t0 + crouch - 2, t0 + crouch - 2, take_off)
        swing_up = _bump(n, take_off - 1, take_off + 2, touch - 1, touch + land)
        for side in (LEFT, RIGHT):
            _set_arm(c, side, swing_back, flex=-0.6, abd=0.2, elbow=0.3)
            _set_arm(c, side, swing_up, flex=1.4 if high else 0.8, abd=0.25, elbow=0.3, pole="down")
        c["spine"][:, 0] += 0.35 * swing_back + 0.2 * _bump(n, touch, touch + 2, touch + 3, touch + land)
        t0 = touch + land + rest
    if forward:
        phrases = {1: ["jumps forward", "leaps forward", "does a jump forward", "jumps forward once"],
                   2: ["jumps forward twice", "does two jumps forward", "jumps forward two times"],
                   3: ["jumps forward three times", "does three jumps forward", "leaps forward three times"]}[count]
    else:
        phrases = {1: ["jumps", "jumps up", "jumps once", "does a jump in place", "jumps up in place"],
                   2: ["jumps twice", "jumps two times", "jumps up and down twice", "does two jumps in place"],
                   3: ["jumps three times", "jumps up and down three times", "does three jumps in place"]}[count]
    if high and not forward:
        phrases = [p.replace("jumps", "jumps high", 1) if p.startswith("jumps") else p for p in phrases]
    return _Segment(f"jump{'_forward' if forward else ''}_{count}", c, phrases)


def _wave_controls(c: dict[str, np.ndarray], rng: np.random.Generator, sides: tuple[int, ...], w: np.ndarray,
                   freq: float) -> None:
    n = len(w)
    phase = 2.0 * np.pi * freq * np.arange(n) / FPS
    for side in sides:
        osc = np.sin(phase + (np.pi if side == RIGHT else 0.0))
        _set_arm(c, side, w, flex=0.35 + 0.1 * osc, abd=rng.uniform(2.1, 2.5) + 0.2 * osc, hadd=0.0,
                 elbow=1.2 + 0.35 * osc, pole="down")


def _hand_words(sides: tuple[int, ...]) -> tuple[str, str]:
    if len(sides) == 2:
        return "both hands", "both arms"
    name = "left" if sides[0] == LEFT else "right"
    return f"{{their}} {name} hand", f"{{their}} {name} arm"


def _wave(rng: np.random.Generator, style: _Style, n: int | None = None) -> _Segment:
    sides = [(LEFT,), (RIGHT,), (RIGHT,), (LEFT, RIGHT)][rng.integers(4)]
    quick = rng.random() < 0.3
    freq = rng.uniform(2.2, 2.8) if quick else rng.uniform(1.2, 1.8)
    n = n or _frames(rng.uniform(2.5, 5.0))
    c = _rest_controls(n, style)
    w = _bump(n, 2, 10, n - 10, n - 2)
    _wave_controls(c, rng, sides, w, freq)
    hand, arm = _hand_words(sides)
    adv = "quickly " if quick else ""
    phrases = [f"{adv}waves with {hand}", f"{adv}waves {hand}", f"raises {hand} and {adv}waves",
               f"{adv}waves hello with {hand}", f"{adv}waves goodbye with {hand}"]
    gerunds = [f"{'quickly ' if quick else ''}waving with {hand}", f"waving {hand}", f"waving {arm} in the air"]
    label = "wave_" + ("both" if len(sides) == 2 else ("left" if sides[0] == LEFT else "right"))
    return _Segment(label, c, phrases, gerunds)


def _kick(rng: np.random.Generator, style: _Style) -> _Segment:
    side = int(rng.integers(2))
    count = int(rng.choice([1, 1, 2]))
    high = rng.random() < 0.4
    lead, kick, rest = _frames(rng.uniform(0.4, 0.7)), _frames(rng.uniform(0.6, 0.9)), _frames(rng.uniform(0.3, 0.6))
    n = lead + count * (kick + rest) + _frames(0.4)
    c = _rest_controls(n, style)
    stance = 1 - side
    shift = _bump(n, lead - 8, lead, n - _frames(0.4) - 4, n - 2)
    c["pelvis"][:, 0] += shift * 0.07 * _SIDE[stance]
    t0 = lead
    for _ in range(count):
        t = np.arange(n, dtype=np.float64)
        s = np.clip((t - t0) / kick, 0.0, 1.0)
        active = (t >= t0) & (t < t0 + kick)
        c["free"][active, side] = 1.0
        # chamber (knee up), snap out, retract
        extend = np.sin(np.pi * s) ** 2
        up = (0.5 if high else 0.28) * extend + 0.12 * np.sin(np.pi * s)
        c["foot_off"][:, side, 1] += np.where(active, up, 0.0)
        c["foot_off"][:, side, 2] += np.where(active, (0.5 if high else 0.42) * extend, 0.0)
        c["spine"][:, 0] -= np.where(active, 0.25 * extend, 0.0)
        guard = _bump(n, t0 - 4, t0 + 2, t0 + kick, t0 + kick + 6)
        for arm in (LEFT, RIGHT):
            _set_arm(c, arm, guard, flex=0.6, abd=0.35, elbow=1.3, pole="back")
        t0 += kick + rest
    name = "left" if side == LEFT else "right"
    if count == 1:
        phrases = [f"kicks with {{their}} {name} leg", f"kicks forward with {{their}} {name} foot",
                   f"does a {'high ' if high else ''}kick with the {name} leg",
                   f"kicks {{their}} {name} leg forward"]
    else:
        phrases = [f"kicks twice with {{their}} {name} leg", f"does two kicks with the {name} leg",
                   f"kicks forward two times with the {name} foot"]
    if high:
        phrases.append(f"kicks high with the {name} leg")
    return _Segment(f"kick_{name}", c, phrases)


def _sit(rng: np.random.Generator, style: _Style, h0: float) -> _Segment:
    stand_up = rng.random() < 0.5
    down, hold, up = _frames(rng.uniform(1.0, 1.6)), _frames(rng.uniform(1.0, 2.5)), _frames(rng.uniform(1.0, 1.5))
    lead = _frames(rng.uniform(0.3, 0.6))
    n = lead + down + hold + (up + _frames(0.4) if stand_up else 0)
    c = _rest_controls(n, style)
    seat = rng.uniform(0.42, 0.5)
    end_down = lead + down
    sat = _ramp(n, lead, end_down)
    if stand_up:
        sat = sat * (1.0 - _ramp(n, end_down + hold, end_down + hold + up))
    lean = _bump(n, lead, lead + down * 0.5, lead + down * 0.6, end_down + 4)
    if stand_up:
        lean += _bump(n, end_down + hold - 2, end_down + hold + up * 0.4, end_down + hold + up * 0.5,
                      end_down + hold + up)
    c["pelvis"][:, 1] = -sat * (h0 - seat - 0.08)
    c["pelvis"][:, 2] = -sat * rng.uniform(0.22, 0.3)
    c["pelvis_rot"][:, 0] = 0.5 * lean + 0.1 * sat
    c["spine"][:, 0] += 0.35 * lean
    for side in (LEFT, RIGHT):
        _set_arm(c, side, sat, flex=0.75, abd=0.15, elbow=0.9, pole="back")
    if stand_up:
        phrases = ["sits down and stands back up", "sits down on a chair and gets up again",
                   "sits down for a moment and stands up", "takes a seat and stands up again"]
    else:
        phrases = ["sits down", "sits down on a chair", "takes a seat", "sits down slowly" if down > 28 else
                   "lowers {their} body onto a seat"]
    return _Segment("sit_stand" if stand_up else "sit", c, phrases)


def _bow(rng: np.random.Generator, style: _Style) -> _Segment:
    deep = rng.random() < 0.5
    count = int(rng.choice([1, 1, 2]))
    angle = rng.uniform(0.85, 1.1) if deep else rng.uniform(0.3, 0.5)
    down, hold, up = _frames(rng.uniform(0.6, 1.0)), _frames(rng.uniform(0.4, 1.2)), _frames(rng.uniform(0.6, 1.0))
    lead = _frames(rng.uniform(0.3, 0.7))
    n = lead + count * (down + hold + up + _frames(0.3)) + _frames(0.3)
    c = _rest_controls(n, style)
    t0 = lead
    bend = np.zeros(n)
    for _ in range(count):
        bend += _bump(n, t0, t0 + down, t0 + down + hold, t0 + down + hold + up)
        t0 += down + hold + up + _frames(0.3)
    c["pelvis_rot"][:, 0] = 0.55 * angle * bend
    c["spine"][:, 0] += 0.45 * angle * bend
    c["head"][:, 0] += 0.2 * bend
    c["pelvis"][:, 2] = -0.1 * angle * bend
    for side in (LEFT, RIGHT):
        c["arm"][:, side, 0] += 0.6 * angle * bend  # arms hang towards the floor
    if count == 2:
        phrases = ["bows twice", "bows two times", f"bows {'deeply ' if deep else ''}twice"]
    elif deep:
        phrases = ["bows deeply", "makes a deep bow", "bows down deeply", "bends forward in a deep bow"]
    else:
        phrases = ["gives a slight bow", "bows slightly", "nods with a small bow", "bows a little"]
    phrases.append("bows")
    return _Segment("bow", c, phrases)


def _squat(rng: np.random.Generator, style: _Style) -> _Segment:
    count = int(rng.choice([1, 2, 3]))
    period = _frames(rng.uniform(1.5, 2.2))
    lead = _frames(rng.uniform(0.3, 0.6))
    n = lead + count * period + _frames(0.4)
    c = _rest_controls(n, style)
    depth = rng.uniform(0.3, 0.42)
    t = np.arange(n, dtype=np.float64)
    s = np.clip((t - lead) / period, 0.0, count)
    down = np.where((t >= lead) & (t < lead + count * period), np.sin(np.pi * (s % 1.0)) ** 2, 0.0)
    c["pelvis"][:, 1] = -depth * down
    c["pelvis"][:, 2] = -0.15 * down
    c["pelvis_rot"][:, 0] = 0.35 * down
    c["spine"][:, 0] += 0.2 * down
    arms_up = _bump(n, lead - 4, lead + 4, lead + count * period - 4, lead + count * period + 4)
    for side in (LEFT, RIGHT):
        _set_arm(c, side, arms_up * (0.4 + 0.6 * down), flex=1.45, abd=0.1, elbow=0.2, pole="out")
    phrases = {1: ["squats down and stands back up", "does a squat", "squats once", "squats"],
               2: ["squats twice", "does two squats", "squats down two times"],
               3: ["squats three times", "does three squats", "squats down and up three times"]}[count]
    return _Segment(f"squat_{count}", c, phrases)


def _clap_controls(c: dict[str, np.ndarray], w: np.ndarray, claps: int, start: int, period: int) -> None:
    n = len(w)
    t = np.arange(n, dtype=np.float64)
    phase = np.clip((t - start) / period, 0.0, claps)
    together = np.where((t >= start) & (t < start + claps * period), np.sin(np.pi * (phase % 1.0)) ** 2, 0.0)
    for side in (LEFT, RIGHT):
        # hadd -0.25 holds the wrists about 35 cm apart, +0.17 brings them within a few cm in front of the chest
        _set_arm(c, side, w, flex=0.9, abd=0.0, hadd=-0.25 + 0.42 * together, elbow=0.9, pole="down")


def _clap(rng: np.random.Generator, style: _Style, n: int | None = None) -> _Segment:
    claps = int(rng.integers(3, 8))
    period = _frames(rng.uniform(0.35, 0.55))
    lead = _frames(rng.uniform(0.5, 0.8))
    # given a length (walking while clapping), clap for all of it: the walk's arm swing is stilled for all of it
    fill = n is not None
    n = n or lead + claps * period + _frames(rng.uniform(0.6, 1.0))
    claps = max(1, (n - lead - 8) // period) if fill else claps
    c = _rest_controls(n, style)
    w = _bump(n, lead - 8, lead, lead + claps * period, lead + claps * period + 8)
    _clap_controls(c, w, claps, lead, period)
    count = _CARDINALS.get(claps, str(claps))
    phrases = [f"claps {{their}} hands {count} times", f"claps {count} times", "claps {their} hands",
               "claps in front of {their} chest", "applauds"]
    gerunds = ["clapping {their} hands", "clapping", "clapping in front of {their} chest"]
    return _Segment(f"clap_{claps}", c, phrases, gerunds)


def _raise_arms(rng: np.random.Generator, style: _Style) -> _Segment:
    sides = [(LEFT,), (RIGHT,), (LEFT, RIGHT), (LEFT, RIGHT)][rng.integers(4)]
    how = rng.choice(["forward", "side", "up"])
    rise, hold, fall = _frames(rng.uniform(0.6, 1.0)), _frames(rng.uniform(0.8, 2.0)), _frames(rng.uniform(0.6, 1.0))
    lead = _frames(rng.uniform(0.3, 0.6))
    n = lead + rise + hold + fall + _frames(0.4)
    c = _rest_controls(n, style)
    w = _bump(n, lead, lead + rise, lead + rise + hold, lead + rise + hold + fall)
    pose = {"forward": dict(flex=1.5, abd=0.05, elbow=0.1, pole="out"),
            "side": dict(flex=0.1, abd=1.5, elbow=0.1, pole="back"),
            "up": dict(flex=0.3, abd=2.85, elbow=0.15, pole="out")}[how]
    for side in sides:
        _set_arm(c, side, w, **pose)
    _, arm = _hand_words(sides)
    if how == "forward":
        phrases = [f"raises {arm} forward", f"lifts {arm} to the front", f"holds {arm} straight out in front",
                   f"raises {arm} in front of {{their}} body"]
    elif how == "side":
        phrases = [f"raises {arm} to the side" + ("s" if len(sides) == 2 else ""),
                   f"lifts {arm} out to the side" + ("s" if len(sides) == 2 else ""),
                   f"stretches {arm} out sideways"]
    else:
        phrases = [f"raises {arm} above {{their}} head", f"lifts {arm} up over {{their}} head",
                   f"raises {arm} straight up", f"reaches up with {arm}"]
    phrases = [p + " and lowers " + ("them" if len(sides) == 2 else "it") + " again" if i == 0 else p
               for i, p in enumerate(phrases)]
    gerunds = [f"holding {arm} up" if how == "up" else f"holding {arm} out"]
    label = "raise_" + ("both" if len(sides) == 2 else ("left" if sides[0] == LEFT else "right")) + f"_{how}"
    return _Segment(label, c, phrases, gerunds)


def _punch(rng: np.random.Generator, style: _Style) -> _Segment:
    count = int(rng.integers(2, 7))
    alternate = rng.random() < 0.6
    first = int(rng.integers(2))
    period = _frames(rng.uniform(0.4, 0.6))
    lead = _frames(rng.uniform(0.4, 0.7))
    n = lead + count * period + _frames(0.6)
    c = _rest_controls(n, style)
    guard = _bump(n, lead - 8, lead - 1, lead + count * period, lead + count * period + 8)
    c["pelvis"][:, 1] -= 0.05 * guard
    for side in (LEFT, RIGHT):
        _set_arm(c, side, guard, flex=1.0, abd=0.35, hadd=0.35, elbow=2.1, pole="down")
    t = np.arange(n, dtype=np.float64)
    for k in range(count):
        side = (first + k) % 2 if alternate else first
        s = np.clip((t - lead - k * period) / period, 0.0, 1.0)
        hit = np.where((s > 0) & (s < 1), np.sin(np.pi * s) ** 2, 0.0)
        _set_arm(c, side, hit, flex=1.5, abd=0.1, hadd=0.4, elbow=0.1, pole="down")
        c["spine"][:, 1] += 0.3 * hit * -_SIDE[side]
    name = "left" if first == LEFT else "right"
    count_word = _CARDINALS[count]
    if alternate:
        phrases = [f"throws {count_word} punches", f"punches {count_word} times alternating fists",
                   "punches forward with both fists", f"throws {count_word} punches with alternating hands",
                   "boxes with both fists"]
        label = "punch_alternate"
    else:
        phrases = [f"punches {count_word} times with {{their}} {name} fist", f"punches with the {name} fist",
                   f"throws {count_word} punches with the {name} hand", f"punches forward with the {name} hand"]
        label = f"punch_{name}"
    return _Segment(label, c, phrases)


def _stand(rng: np.random.Generator, style: _Style) -> _Segment:
    n = _frames(rng.uniform(0.8, 1.5))
    return _Segment("stand", _rest_controls(n, style), ["stops", "stands still", "comes to a stop"])


SINGLE_ACTIONS = ("walk", "run", "sidestep", "turn", "jump", "wave", "kick", "sit", "bow", "squat", "clap",
                  "raise_arms", "punch")
SEQUENCE_KINDS = ("walk_turn_walk", "walk_turn", "turn_walk", "walk_stop", "walk_wave", "walk_sit", "jump_turn",
                  "wave_walk")
OVERLAY_KINDS = ("walk_while_wave", "walk_while_clap")
SYNTHETIC_ACTIONS = SINGLE_ACTIONS + SEQUENCE_KINDS + OVERLAY_KINDS


def _single(rng: np.random.Generator, style: _Style, kind: str, h0: float) -> _Segment:
    if kind == "walk":
        return _walk(rng, style, _frames(rng.uniform(2.5, 9.0)), start=False, stop=False)
    if kind == "run":
        return _run(rng, style, _frames(rng.uniform(2.2, 6.0)), start=False, stop=False)
    if kind == "sidestep":
        return _sidestep(rng, style, _frames(rng.uniform(2.2, 5.0)))
    if kind == "turn":
        return _turn(rng, style)
    if kind == "jump":
        return _jump(rng, style)
    if kind == "wave":
        return _wave(rng, style)
    if kind == "kick":
        return _kick(rng, style)
    if kind == "sit":
        return _sit(rng, style, h0)
    if kind == "bow":
        return _bow(rng, style)
    if kind == "squat":
        return _squat(rng, style)
    if kind == "clap":
        return _clap(rng, style)
    if kind == "raise_arms":
        return _raise_arms(rng, style)
    if kind == "punch":
        return _punch(rng, style)
    raise ValueError(f"unknown synthetic action {kind!r}; expected one of {SYNTHETIC_ACTIONS}")


def _sequence(rng: np.random.Generator, style: _Style, kind: str, h0: float) -> list[_Segment]:
    def walk(start: bool, stop: bool, seconds: tuple[float, float] = (2.0, 3.5)) -> _Segment:
        return _walk(rng, style, _frames(rng.uniform(*seconds)), start=start, stop=stop, direction="forward",
                     curve="none")

    if kind == "walk_turn_walk":
        angle = int(rng.choice([90, 180]))
        return [walk(False, True), _turn(rng, style, angle=angle), walk(True, False)]
    if kind == "walk_turn":
        return [walk(False, True, (2.5, 4.5)), _turn(rng, style)]
    if kind == "turn_walk":
        return [_turn(rng, style, angle=int(rng.choice([90, 180]))), walk(True, False, (2.5, 4.5))]
    if kind == "walk_stop":
        return [walk(False, True, (2.5, 5.0)), _stand(rng, style)]
    if kind == "walk_wave":
        return [walk(False, True, (2.0, 4.0)), _wave(rng, style)]
    if kind == "walk_sit":
        return [walk(False, True, (2.0, 3.5)), _sit(rng, style, h0)]
    if kind == "jump_turn":
        return [_jump(rng, style), _turn(rng, style)]
    if kind == "wave_walk":
        return [_wave(rng, style), walk(True, False, (2.0, 4.0))]
    raise ValueError(f"unknown synthetic sequence {kind!r}; expected one of {SEQUENCE_KINDS}")


def _overlay(rng: np.random.Generator, style: _Style, kind: str) -> _Segment:
    n = _frames(rng.uniform(3.0, 8.0))
    walk = _walk(rng, style, n, start=False, stop=False, direction="forward",
                 speed=rng.choice(["slow", "normal"]), curve="none")
    upper = _wave(rng, style, n) if kind == "walk_while_wave" else _clap(rng, style, n)
    c = walk.controls
    c["arm"], c["pole"] = upper.controls["arm"], upper.controls["pole"]
    w = _bump(n, 2, 10, n - 10, n - 2)
    c["swing"] *= 1.0 - w
    bodies = [f"{p} while {g}" for p in walk.phrases for g in upper.gerunds]
    return _Segment(f"{walk.label}+{upper.label}", c, bodies)
