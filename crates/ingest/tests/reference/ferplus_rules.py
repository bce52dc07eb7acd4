"""Reference values for crates/ingest/tests/it/labels.rs.

A plain-Python transcription of `FERPlusReader._process_data` from microsoft/FERPlus
(src/ferplus.py, MIT licence), followed by the reader's "drop if the target peaks at
unknown/NF, else drop those two entries and renormalise" step. Standard library only.
Run: python3 crates/ingest/tests/reference/ferplus_rules.py
"""
import math

UNKNOWN, NF = 8, 9


def argmax(xs):
    best = 0
    for i, x in enumerate(xs):
        if x > xs[best]:
            best = i
    return best


def process(raw, mode):
    raw = [float(v) for v in raw]
    size = len(raw)
    unknown = [0.0] * size
    unknown[-2] = 1.0
    raw = [0.0 if v < 1.0 + 1e-12 else v for v in raw]
    total = sum(raw)
    emotion = [0.0] * size
    if mode == "majority":
        maxval = max(raw)
        if maxval > 0.5 * total:
            emotion[argmax(raw)] = maxval
        else:
            emotion = unknown
    elif mode == "crossentropy":
        sum_part, count, valid = 0.0, 0, True
        while sum_part < 0.75 * total and count < 3 and valid:
            maxval = max(raw)
            for i in range(size):
                if raw[i] == maxval:
                    emotion[i] = maxval
                    raw[i] = 0.0
                    sum_part += emotion[i]
                    count += 1
                    if i >= 8:
                        valid = False
                        if sum(emotion) > maxval:
                            emotion[i] = 0.0
                            count -= 1
                        break
        if sum(emotion) <= 0.5 * total or count > 3:
            emotion = unknown
    elif mode == "multi_target":
        for i in range(size):
            if raw[i] >= 0.3 * total:
                emotion[i] = raw[i]
        if sum(emotion) <= 0.5 * total:
            emotion = unknown
    s = sum(emotion)
    return [v / s for v in emotion]


def final(raw, mode):
    t = process(raw, mode)
    if argmax(t) >= 8:
        return None
    t = t[:8]
    s = sum(t)
    return [round(v / s, 6) for v in t]


def crowd(raw):
    s = sum(raw[:8])
    if s == 0:
        return None, None
    p = [v / s for v in raw[:8]]
    return [round(v, 6) for v in p], round(-sum(v * math.log(v) for v in p if v > 0), 6)


CASES = [
    [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],
    [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],
    [2, 0, 0, 0, 0, 0, 0, 0, 8, 0],
    [4, 0, 2, 0, 0, 0, 0, 0, 0, 4],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [0, 10, 0, 0, 0, 0, 0, 0, 0, 0],
    [3, 3, 3, 0, 0, 0, 0, 0, 1, 0],
    [2, 2, 2, 2, 2, 0, 0, 0, 0, 0],
    [3, 2, 2, 2, 0, 0, 0, 0, 0, 1],
    [6, 0, 0, 0, 0, 0, 0, 0, 3, 1],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
]

for votes in CASES:
    maj = final(votes, "majority")
    print(votes)
    print("  majority    ", None if maj is None else argmax(maj))
    print("  crossentropy", final(votes, "crossentropy"))
    mt = final(votes, "multi_target")
    print("  multi_target", None if mt is None else [1.0 if v > 0 else 0.0 for v in mt])
    print("  crowd       ", *crowd(votes))
