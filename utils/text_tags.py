"""A small, dependency-free tagger that writes HumanML3D caption lines.

HumanML3D stores every caption as ``caption#word/POS word/POS ...#start#end``. The original tokens came from spaCy:
alphabetic tokens only, hyphens removed first, the lemma for NOUN and VERB tokens (except the word ``left``, which
the lemmatiser would turn into ``leave``), the plain word otherwise, with spaCy's coarse POS (VERB, NOUN, DET, ADP,
NUM, AUX, PRON, ADJ, ADV, CCONJ, SCONJ, PART, PROPN, INTJ). The evaluator's word vectorizer reads these tokens, so new
captions (synthetic data, imported BVH clips) must be tagged the same way; pulling in spaCy and a language model just
for this is not worth it for the short, stereotyped sentences of motion captions.

The tagger is a lexicon of the motion vocabulary (actions, body parts, directions, manners, function words) with the
inflections generated from the base forms, a few context rules for words that are both noun and verb ("walks" after
a subject is a verb, "a walk" is a noun), and suffix rules for words not in the lexicon. Tokens are lower-cased
(the word-vector vocabulary is lower-case).
"""

from __future__ import annotations

import re

__all__ = ["format_text_line", "lemmatize", "mirror_caption", "tag_caption", "tag_words"]

# ---------------------------------------------------------------------------------------------------------------------
# Lexicon
# ---------------------------------------------------------------------------------------------------------------------

_VERBS = """
walk run jump turn wave kick sit bow squat clap raise lower spin step stand dash punch slash dance gesture guide
respond call move lift swing stretch bend crouch hop jog stop start shuffle rotate pivot sprint skip march stroll
strut stride lean twist reach point nod shake throw catch push pull climb crawl kneel lie fall rise get go come take
make do perform play hold carry grab pick put place touch rub wipe clean stir pour drink eat hit strike box fight
block dodge duck slide roll tumble stumble trip balance limp sneak tiptoe hurry approach return continue repeat
begin finish look face extend flex swim paddle skate ski bounce sway rock wiggle flap circle cross lunge stomp
tap pat scratch wash brush comb drive ride fly float hang swing keep seem try use show imitate mimic pretend
lead follow greet salute beckon signal wait rest relax stagger shove kneel land drop toss shoot aim draw fold
unfold open close cover bring send give receive pass hand shift transfer change slow accelerate decelerate speed
squeeze flip cartwheel somersault exercise warm practice dribble kneel leap vault crouch sidestep backflip
lose pace tread trudge hobble waddle prance skip gallop jab uppercut swat slap stab thrust swipe chop sweep mop
curve veer alternate recover avoid maintain rebalance compensate counterbalance search assume inspect complete
fence glance serve miss regain steady stabilize retrieve cause pause focus paralyze
""".split()

# Verbs that double their final consonant before -ing / -ed (run -> running, step -> stepped).
_DOUBLING = set("""
run sit step hop stop jog skip spin clap nod pat tap drop grab swim trip slap stab chop mop shop plan
begin strut stir
""".split())

_IRREGULAR_VERBS = {
    "ran": "run", "sat": "sit", "stood": "stand", "spun": "spin", "swung": "swing", "threw": "throw",
    "thrown": "throw", "went": "go", "gone": "go", "came": "come", "took": "take", "taken": "take", "made": "make",
    "got": "get", "gotten": "get", "bent": "bend", "held": "hold", "knelt": "kneel", "fell": "fall",
    "fallen": "fall", "rose": "rise", "risen": "rise", "led": "lead", "caught": "catch", "swam": "swim",
    "began": "begin", "begun": "begin", "kept": "keep", "shook": "shake", "shaken": "shake", "strode": "stride",
    "brought": "bring", "did": "do", "done": "do", "lay": "lie", "lain": "lie", "struck": "strike",
    "slid": "slide", "leapt": "leap", "drew": "draw", "drawn": "draw", "gave": "give", "given": "give",
    "rode": "ride", "ridden": "ride", "flew": "fly", "flown": "fly", "hung": "hang", "drank": "drink",
    "drunk": "drink", "ate": "eat", "eaten": "eat", "shot": "shoot", "sent": "send", "swept": "sweep",
    "hit": "hit", "put": "put", "shut": "shut", "cut": "cut", "lying": "lie", "trod": "tread", "lost": "lose",
    "does": "do", "has": "have", "had": "have", "is": "be", "are": "be", "was": "be", "were": "be", "been": "be",
    "am": "be",
}

_NOUNS = """
person man woman human figure guy lady boy girl child kid people individual subject character actor dancer
athlete player body arm leg hand foot head knee shoulder elbow wrist hip waist torso chest back finger toe heel
neck face thumb fist palm ankle belly stomach thigh calf shin spine hair eye
circle step stop time way direction side ground floor chair seat ball object place position air front manner pace
speed goodbye hello sword degree thug giant motion movement gesture line path curve spot distance jump walk run
turn wave kick bow squat clap dance punch slash swing spin lunge hop stretch twist crawl push pull throw catch
table stairs stair wall door box cup bottle glass rope bar ladder weight obstacle track room corner edge middle
bottom
center centre floor meter metre centimeter foot inch second minute moment beginning end start half quarter
instrument guitar violin drum piano racket bat club golf tennis basketball football soccer baseball boxing
exercise routine pose stance posture balance rest pattern square rectangle triangle figure angle
partner thing stuff sequence series rhythm music beat song dog cat animal bird chicken monkey zombie
robot soldier ninja boxer fighter swimmer runner walker elder thug hoodlum punk confidence
mood emotion style attitude tiptoe round sidestep lap
""".split()

_IRREGULAR_NOUNS = {
    "feet": "foot", "men": "man", "women": "woman", "people": "people", "children": "child", "teeth": "tooth",
    "knives": "knife", "halves": "half", "shelves": "shelf", "stairs": "stair", "mice": "mouse",
}

_ADJECTIVES = """
happy sad angry proud old tired slow quick fast small big large high low whole full short long several few other
same masculine feminine childish confident unconfident energetic active musical elderly straight upright wide
narrow gentle light heavy playful brisk steady normal casual relaxed excited nervous shy timid bold strong weak
upward downward circular sharp slight little huge tiny giant young lazy sloppy clumsy graceful elegant stiff
loose careful cautious quiet loud hard soft deep shallow sudden rapid gradual smooth rough aggressive calm scared
afraid frightened sleepy drunk injured hurt dizzy cheerful joyful gloomy depressed furious annoyed bored lively
dynamic vigorous powerful weird strange funny silly crazy different similar opposite original initial final
first second third last next previous entire complete basic simple single double triple multiple various
horizontal vertical diagonal parallel perpendicular flat round square open closed bent stretched raised lowered
extended crossed forward backward sideways inward outward clockwise counterclockwise anticlockwise medium
moderate regular natural comfortable exaggerated dramatic theatrical masculinity feminine manly girly tall
""".split()

_ADVERBS = """
slowly quickly fast forward forwards backward backwards sideways sidewards then again back around away up down
together twice once thrice repeatedly briefly gently slightly very quite rapidly steadily happily sadly angrily
proudly energetically tiredly casually clockwise counterclockwise anticlockwise overhead halfway still also too
just only straight here there briskly carefully lightly heavily timidly confidently playfully normally
immediately finally afterwards afterward first meanwhile forth ahead upward upwards downward downwards inward
inwards outward outwards aside apart along almost nearly about approximately roughly continuously constantly
suddenly gradually slightly barely hardly softly loudly calmly nervously cheerfully lazily aggressively
vigorously powerfully gracefully elegantly clumsily awkwardly cautiously hurriedly leisurely quietly rhythmically
alternately simultaneously consecutively diagonally horizontally vertically upright sharply smoothly widely
high low far near later soon now already even rather somewhat much more less most least enough instead otherwise
""".split()

_CLOSED_CLASS = {
    "DET": "a an the this that these those his her their its my your our some any each every another both all no "
           "either neither such what which whose",
    "PRON": "he she they it him them someone somebody something anyone anybody anything everyone everybody "
            "everything himself herself themselves itself i you we me us myself yourself ourselves who whom "
            "nobody nothing none oneself",
    "AUX": "is are was were be been being am has have had does do did can could will would shall should may "
           "might must",
    "CCONJ": "and or but nor",
    "SCONJ": "while as if because until unless although though whether when whenever where once since",
    "ADP": "with in on at to from into onto over under across through toward towards behind above below by of "
           "for like near along around off out up down upon within without between beside besides against "
           "past beyond via per during before after inside outside underneath beneath throughout",
    "PART": "not",
    "NUM": "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
           "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred "
           "thousand",
    "INTJ": "hi hey bye yes oh",
}

_LEFT_RIGHT = {"left", "right"}


def _third_person(verb: str) -> str:
    if verb in ("go", "do"):
        return verb + "es"
    if verb.endswith(("s", "x", "z", "ch", "sh")):
        return verb + "es"
    if len(verb) > 1 and verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _gerund(verb: str) -> str:
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb in _DOUBLING:
        return verb + verb[-1] + "ing"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and verb != "be":
        return verb[:-1] + "ing"
    return verb + "ing"


def _past(verb: str) -> str:
    if verb.endswith("e"):
        return verb + "d"
    if len(verb) > 1 and verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    if verb in _DOUBLING:
        return verb + verb[-1] + "ed"
    return verb + "ed"


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if len(noun) > 1 and noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _build_lexicon() -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    """word -> possible POS, and (word, POS) -> lemma for the NOUN/VERB forms."""
    pos: dict[str, set[str]] = {}
    lemma: dict[tuple[str, str], str] = {}

    def add(word: str, tag: str, base: str | None = None) -> None:
        pos.setdefault(word, set()).add(tag)
        if base is not None:
            lemma[(word, tag)] = base

    for tag, words in _CLOSED_CLASS.items():
        for w in words.split():
            add(w, tag)
    for v in _VERBS:
        for form in (v, _third_person(v), _gerund(v), _past(v)):
            add(form, "VERB", v)
    for form, base in _IRREGULAR_VERBS.items():
        add(form, "VERB", base)
    for n in _NOUNS:
        add(n, "NOUN", n)
        add(_plural(n), "NOUN", n)
    for form, base in _IRREGULAR_NOUNS.items():
        add(form, "NOUN", base)
    for a in _ADJECTIVES:
        add(a, "ADJ")
    for a in _ADVERBS:
        add(a, "ADV")
    for w in _LEFT_RIGHT:
        pos[w] = {"ADJ", "ADV", "NOUN"}
    # Function words whose tag the context rules below decide; the lexicon must not offer noun/verb readings.
    for w in ("to", "up", "down", "around", "over", "off", "out", "back", "that", "one", "once", "like", "before",
              "after", "as", "do", "does", "did", "have", "has", "had", "be", "is", "are", "was", "were"):
        pos[w] = {t for t in pos.get(w, set()) if t not in ("NOUN", "VERB")} or {"ADV"}
    pos["back"] = {"ADV"}  # "his back" is a noun; tag_words decides that from the determiner
    lemma[("back", "NOUN")] = "back"
    pos["still"] = {"ADV"}
    pos["forward"] = {"ADV"}
    pos["fast"] = {"ADV", "ADJ"}
    pos["straight"] = {"ADV", "ADJ"}
    pos["first"] = {"ADV", "ADJ"}
    pos["high"] = {"ADV", "ADJ"}
    pos["low"] = {"ADV", "ADJ"}
    pos["giant"] = {"NOUN", "ADJ"}
    pos["while"] = {"SCONJ"}
    pos["once"] = {"ADV"}
    return pos, lemma


_LEXICON, _LEMMAS = _build_lexicon()
_VERB_BASES = set(_VERBS)
_NOUN_BASES = set(_NOUNS)

# ---------------------------------------------------------------------------------------------------------------------
# Tagging
# ---------------------------------------------------------------------------------------------------------------------

# Letters of any script ([^\W\d_]), so "café" stays one word as in spaCy; on ASCII text this is [A-Za-z].
_TOKEN_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+(?:\.\d+)?|\S")
# Typographic apostrophes (macOS, iOS and word processors type them) read as "'": spaCy splits "person’s" and
# "doesn’t" at them as it does at "'", leaving no stray "s" or "t" word.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_MAIN_VERB_AUX = {"do", "does", "did", "has", "have", "had"}
_INTENSIFIERS = {"very", "quite", "too", "so", "rather", "really", "fairly", "pretty", "extremely"}
_NOUN_CONTEXT = {"DET", "ADJ", "NUM", "ADP"}
_VERB_CONTEXT = {"PRON", "NOUN", "PROPN", "AUX", "ADV", "CCONJ", "SCONJ", "PART", "START", "PUNCT"}


def _strip_suffix_lemma(word: str, suffix: str) -> str:
    """Undo -ing / -ed / -s on a word outside the lexicon (walking -> walk, hopping -> hop, waving -> wave)."""
    stem = word[: -len(suffix)]
    vowels = "aeiou"
    if suffix == "s":
        if stem.endswith("ie") and len(stem) > 3:
            return stem[:-2] + "y"
        if word.endswith("es") and word[:-2].endswith(("ss", "sh", "ch", "x", "z")):
            return word[:-2]  # watches -> watch, fixes -> fix
        return stem
    if suffix == "ed" and stem.endswith("i"):
        return stem[:-1] + "y"
    for cand in (stem, stem + "e"):
        if cand in _VERB_BASES:
            return cand
    if suffix == "ed" and stem.endswith("e"):
        return stem + "e"  # freed -> free, agreed -> agree
    if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "flsz" + vowels:
        return stem[:-1]  # hopping -> hop (seeing -> see keeps its "ee"; added -> add, sniffed -> sniff keep theirs)
    if len(stem) >= 3 and stem[-1] == "l" and stem[-2] in "bcdfgkptz":
        return stem + "e"  # wobbled -> wobble, juggling -> juggle
    if len(stem) >= 3 and stem[-1] == "z" and stem[-2] in vowels + "y":
        return stem + "e"  # sneezed -> sneeze, gazing -> gaze, analyzed -> analyze
    if len(stem) >= 3 and (stem[-1] in "cv" or stem[-1] == "s" and stem[-2] not in vowels + "s"):
        return stem + "e"  # fencing -> fence, serving -> serve, convulsed -> convulse (no English verb ends so)
    if len(stem) >= 3 and stem[-1] not in vowels + "wxy" and stem[-2] in "aiou" and stem[-3] not in vowels:
        return stem + "e"
    return stem


def lemmatize(word: str, pos: str) -> str:
    """The lemma of a lower-case ``word`` read as ``pos`` ("walks", "VERB" -> "walk"; "feet", "NOUN" -> "foot")."""
    if (word, pos) in _LEMMAS:
        return _LEMMAS[(word, pos)]
    if pos == "VERB":
        if word in _IRREGULAR_VERBS:
            return _IRREGULAR_VERBS[word]
        for suffix in ("ing", "ed", "s"):
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                continue  # miss, focus: no -s suffix to strip
            if word.endswith(suffix) and len(word) > len(suffix) + 2:
                return _strip_suffix_lemma(word, suffix)
        return word
    if pos == "NOUN":
        if word in _IRREGULAR_NOUNS:
            return _IRREGULAR_NOUNS[word]
        if word.endswith("ies") and len(word) > 4:
            return word[:-3] + "y"
        if word.endswith(("sses", "shes", "ches", "xes", "zes")):
            return word[:-2]
        if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
            return word[:-1]
    return word


_NOUN_SUFFIXES = ("tion", "sion", "ment", "ness", "ity", "ance", "ence", "er", "or", "ist", "ism")


def _guess_pos(word: str, original: str, prev: str, is_first: bool) -> str:
    """POS of a word outside the lexicon, from its suffix and the previous tag."""
    if original[:1].isupper() and not is_first:
        return "PROPN"
    if word.endswith("ly") and len(word) > 4:
        return "ADV"
    if word.endswith("ing") and len(word) > 5:
        return "NOUN" if prev == "DET" else "VERB"
    if word.endswith("ed") and len(word) > 4:
        return "VERB"
    if word.endswith(("ous", "ful", "ive", "able", "ible", "ic", "ish", "less", "al", "ary")):
        return "ADJ"
    if word.endswith(_NOUN_SUFFIXES):
        return "NOUN"
    if word.endswith("s") and prev in ("PRON", "NOUN", "PROPN", "START") and len(word) > 3:
        return "VERB"
    return "NOUN"


def _resolve(word: str, options: set[str], prev: str, next_options: set[str]) -> str:
    """Pick one tag for a word the lexicon lists under several tags, from its neighbours."""
    if len(options) == 1:
        return next(iter(options))
    if word in _LEFT_RIGHT:
        if word == "left" and prev in ("NOUN", "PRON", "PROPN") and next_options & {"DET"}:
            return "VERB"  # "the person left the room"
        if next_options & {"NOUN"} and not next_options & {"VERB"}:
            return "ADJ"
        if "NOUN" in next_options and (prev in _NOUN_CONTEXT or prev == "NOUN"):
            return "ADJ"  # "a left turn", "a 90 degree left curve"
        return "NOUN" if prev == "DET" else "ADV"
    if word in ("up", "down", "around", "over", "off", "out", "along", "across", "before", "after", "by"):
        return "ADP" if next_options & {"DET", "PRON", "NOUN", "NUM", "PROPN"} else "ADV"
    if "ADJ" in options and next_options & {"NOUN"} and not next_options & {"VERB", "DET"}:
        if prev in _NOUN_CONTEXT or prev in ("START", "VERB", "CCONJ"):
            return "ADJ"
    if "ADJ" in options and prev in ("DET", "NUM", "ADJ") and "NOUN" in next_options:
        return "ADJ"  # "a slow pace", "a fast walk": the noun after it may also be a verb
    if "NOUN" in options and "VERB" in options:
        return "NOUN" if prev in _NOUN_CONTEXT else "VERB"
    if "NOUN" in options and prev in _NOUN_CONTEXT:
        return "NOUN"
    if "VERB" in options and prev in _VERB_CONTEXT:
        return "VERB"
    for tag in ("VERB", "NOUN", "ADV", "ADJ", "ADP", "DET", "PRON", "AUX", "NUM", "SCONJ", "CCONJ", "PART"):
        if tag in options:
            return tag
    return sorted(options)[0]


_CONTRACTIONS = {"don": "do", "doesn": "does", "didn": "did", "isn": "is", "aren": "are", "wasn": "was", "can": "can"}


def _tokens(caption: str) -> list[tuple[str, str]]:
    """``(text, kind)`` tokens, kind "word", "num" or "punct"; hyphens are removed first, as HumanML3D did.

    Only words become output tokens (spaCy's tokens filtered by ``isalpha``); numbers and punctuation stay as
    context ("walks 4 steps": "steps" follows a number, so it is a noun).
    """
    tokens = []
    for tok in _TOKEN_RE.findall(caption.replace("-", "").translate(_APOSTROPHES)):
        if "'" in tok:
            # clitics ("'s", "n't") are not alphabetic tokens; keep the word in front of them
            tok = tok.split("'")[0]
            tok = _CONTRACTIONS.get(tok.lower(), tok)
        if tok.isalpha():
            tokens.append((tok, "word"))
        elif tok[:1].isdigit():
            tokens.append((tok, "num"))
        else:
            tokens.append((tok, "punct"))
    return tokens


def tag_words(caption: str) -> list[tuple[str, str]]:
    """``(token, POS)`` pairs of a caption; the token is the lemma for NOUN/VERB (except "left")."""
    tokens = _tokens(caption)
    words = [t.lower() for t, _ in tokens]
    options = [set(_LEXICON.get(w, ())) if kind == "word" else {kind.upper()} for w, (_, kind) in zip(words, tokens)]
    out: list[tuple[str, str]] = []
    prev, prev2, prev_word = "START", "START", ""
    article = False  # the last determiner was "a" / "an"
    for i, (original, kind) in enumerate(tokens):
        word = words[i]
        if kind != "word":
            prev, prev2, prev_word = ("NUM" if kind == "num" else "PUNCT"), prev, word
            continue
        nxt = options[i + 1] if i + 1 < len(options) else set()
        nxt_word = words[i + 1] if i + 1 < len(words) else ""
        if not options[i]:
            last = next((t for _, t in reversed(out) if t in ("VERB", "NOUN", "PRON", "PROPN")), None)
            tag = _guess_pos(word, original, prev, not out)
            if prev == "AUX" or prev == "PART" and tag == "NOUN" and not word.endswith(_NOUN_SUFFIXES):
                tag = "VERB"  # "is recovering", "to recover" (but "reacts to perturbation")
            elif (prev == "CCONJ" or prev == "ADV" and prev2 == "CCONJ") and last == "VERB" and tag == "NOUN" \
                    and word.endswith("s") and not word.endswith("ss"):
                tag = "VERB"  # "gets pushed and (then) recovers": a verb coordinated with the one before
        elif word == "to":
            # "to walk" is the infinitive marker; "to the left" is a preposition
            verb_next = nxt_word in _VERB_BASES or (not nxt and nxt_word.isalpha() and nxt_word.islower())
            tag = "PART" if verb_next and not nxt & {"DET", "PRON", "NUM"} else "ADP"
        elif word == "back" and prev == "DET":
            tag = "NOUN"
        elif word in _MAIN_VERB_AUX and nxt & {"DET", "NUM", "NOUN"} and not nxt & {"VERB"}:
            # "does a jump", "has his arms raised": a main verb, not an auxiliary
            tag = "VERB"
        elif "ADJ" in options[i] and prev_word in _INTENSIFIERS:
            tag = "ADJ"
        elif options[i] == {"VERB"} and prev in ("NUM", "DET") and word.endswith("s"):
            # "two sidesteps": a plural noun made from a verb
            tag = "NOUN"
        elif {"NOUN", "VERB"} <= options[i] and prev == "VERB" \
                and (word in _VERB_BASES or not word.endswith(("ing", "ed"))):
            # after a verb, a noun: its object ("waves hands", "throws punches", "changes speed") or the noun a
            # participle qualifies ("with alternating hands", "the swinging arms"); "starts boxing" stays a gerund
            tag = "NOUN"
        elif {"NOUN", "VERB"} <= options[i] and prev == "NOUN" and prev2 in ("DET", "NUM", "ADJ") \
                and not word.endswith(("s", "ing", "ed")) and (out[-1][0] == prev_word != "people" or article):
            # a compound inside a noun phrase: "a quarter circle", "a 90 degree(s) turn" ("a person walks" is a
            # verb, and so is "jump" after a plural that no "a" began: "the two men jump")
            tag = "NOUN"
        else:
            tag = _resolve(word, options[i], prev, nxt)
        token = lemmatize(word, tag) if tag in ("NOUN", "VERB") and word != "left" else word
        out.append((token, tag))
        prev, prev2, prev_word = tag, prev, word
        article = word in ("a", "an") if tag == "DET" else article
    return out


def tag_caption(caption: str) -> list[str]:
    """HumanML3D tokens ``word/POS`` of a caption ("a person walks" -> ["a/DET", "person/NOUN", "walk/VERB"])."""
    return [f"{token}/{tag}" for token, tag in tag_words(caption)]


def _format_tag(seconds: float) -> str:
    return repr(round(float(seconds), 3))


def format_text_line(caption: str, f_tag: float = 0.0, to_tag: float = 0.0) -> str:
    """One line of a ``texts/<id>.txt`` file: ``caption#tokens#f_tag#to_tag``.

    Tags are seconds at the text frame rate; ``0.0#0.0`` means the caption describes the whole clip.
    """
    caption = " ".join(caption.replace("#", " ").split())
    return f"{caption}#{' '.join(tag_caption(caption))}#{_format_tag(f_tag)}#{_format_tag(to_tag)}"


# Whole words only ("bright", "leftovers" stay), "leftward(s)", "leftmost", "lefthand(ed)" and their "right" included.
_MIRROR_RE = re.compile(r"\b(?:left|right)(?:wards?|most|hand(?:ed)?)?\b|\b(?:counter[- ]?|anti[- ]?)?clockwise\b",
                        re.IGNORECASE)


def _mirror_word(match: re.Match) -> str:
    word = match.group(0)
    low = word.lower()
    if low.startswith("left"):
        new = "right" + low[4:]
    elif low.startswith("right"):
        new = "left" + low[5:]
    elif low == "clockwise":
        new = "counterclockwise"
    else:
        new = "clockwise"
    if word.isupper():
        return new.upper()
    return new.capitalize() if word[:1].isupper() else new


def mirror_caption(caption: str) -> str:
    """The caption of the mirrored motion: left and right (and leftward(s), leftmost, lefthand(ed) and their "right")
    swapped as whole words, case kept.

    As HumanML3D's mirrored ``M`` files, plus clockwise <-> counterclockwise, since mirroring also reverses the
    sense of turning.
    """
    return _MIRROR_RE.sub(_mirror_word, caption)
