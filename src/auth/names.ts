import { ChatError } from "../chat/chat-error.js";

/**
 * What a person may call themselves: one spelling per name (NFC, full-width ASCII folded, trimmed,
 * inner spaces collapsed), nothing invisible, no look-alike script mixes (UTS #39, "moderately
 * restrictive"), and never `system`, which the push API speaks as.
 */

export const MAX_USERNAME = 32;
export const MAX_USER_ID = 64;

/**
 * Characters that render as nothing (or as blank) and so let two different names look the same:
 * controls, format characters (zero-width, bidi controls, soft hyphen, tags), private use, lone
 * surrogates, unassigned code points, line/paragraph separators, the combining grapheme joiner,
 * variation selectors, Hangul fillers, Khmer inherent vowels, Mongolian selectors, braille blank.
 */
const INVISIBLE =
  // biome-ignore lint/suspicious/noMisleadingCharacterClass: each mark is matched on its own
  /[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Cn}\p{Zl}\p{Zp}\u034F\u115F\u1160\u17B4\u17B5\u180B-\u180F\u2800\u3164\uFE00-\uFE0F\uFFA0\u{E0100}-\u{E01EF}]/u;
const INVISIBLES = new RegExp(INVISIBLE.source, "gu");
const SPACES = /\p{Zs}+/gu;
const FULL_WIDTH_ASCII = /[\uFF01-\uFF5E]/g;
/** More combining marks in a row than any script needs: "Zalgo" text that spills over the page. */
const MARK_RUN = /\p{M}{5,}/u;

/** Scripts a name may be written in; anything else counts as one more script ("Other"). */
const SCRIPTS = [
  "Latin",
  "Greek",
  "Cyrillic",
  "Armenian",
  "Hebrew",
  "Arabic",
  "Syriac",
  "Thaana",
  "Devanagari",
  "Bengali",
  "Gurmukhi",
  "Gujarati",
  "Oriya",
  "Tamil",
  "Telugu",
  "Kannada",
  "Malayalam",
  "Sinhala",
  "Thai",
  "Lao",
  "Tibetan",
  "Myanmar",
  "Georgian",
  "Hangul",
  "Ethiopic",
  "Khmer",
  "Mongolian",
  "Hiragana",
  "Katakana",
  "Bopomofo",
  "Han",
  "Yi",
].map((name) => ({ name, re: new RegExp(`^\\p{Script=${name}}$`, "u") }));
/** Common (digits, punctuation, emoji) and Inherited (combining marks) go with any script. */
const NEUTRAL = /^[\p{Script=Common}\p{Script=Inherited}]$/u;
/** Script sets writing systems combine by nature (Japanese, Chinese with bopomofo, Korean). */
const CJK_SETS = [
  new Set(["Han", "Hiragana", "Katakana"]),
  new Set(["Han", "Bopomofo"]),
  new Set(["Han", "Hangul"]),
];
/** Scripts full of Latin look-alikes (а/a, ο/o, р/p): never mixed with Latin nor each other. */
const CONFUSABLE_WITH_LATIN = new Set(["Greek", "Cyrillic"]);

function scriptOf(ch: string): string | undefined {
  if (NEUTRAL.test(ch)) return undefined;
  return SCRIPTS.find((s) => s.re.test(ch))?.name ?? "Other";
}

/** The scripts of a name's letters, marks and digits (Common and Inherited left out). */
export function scriptsOf(name: string): Set<string> {
  const scripts = new Set<string>();
  for (const ch of name) {
    const s = scriptOf(ch);
    if (s) scripts.add(s);
  }
  return scripts;
}

/**
 * True when the scripts of a name mix the way spoofed names do: Latin with Cyrillic or Greek,
 * or any two scripts that are not Latin plus one other, nor a CJK combination (with or without
 * Latin: "小A", "Tom王" are everyday Chinese names). A single script is always fine.
 */
export function isMixedScript(name: string): boolean {
  const scripts = scriptsOf(name);
  if (scripts.size <= 1) return false;
  const others = [...scripts].filter((s) => s !== "Latin");
  if (CJK_SETS.some((set) => others.every((s) => set.has(s)))) return false;
  return !(scripts.has("Latin") && others.length === 1 && !CONFUSABLE_WITH_LATIN.has(others[0]));
}

/** One spelling per name: NFC, full-width ASCII (IME input) as ASCII, trimmed, single spaces. */
export function normalizeName(raw: string): string {
  return raw
    .normalize("NFC")
    .replace(FULL_WIDTH_ASCII, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0))
    .replace(SPACES, " ")
    .trim();
}

/** True for `system` in any case (the push API's default sender). */
export function isReservedName(name: string): boolean {
  return name.toLowerCase() === "system" || name.toUpperCase() === "SYSTEM";
}

/**
 * Normalizes a display name or an open-mode userId and refuses the ones that would deceive:
 * E_BAD_USERNAME when blank, invisible, too long, Zalgo or mixed-script; E_RESERVED_NAME for
 * `system`. `what` names the field in messages.
 */
export function checkHumanName(raw: string, what: "username" | "userId", max: number): string {
  // Looked for before trimming: a trailing newline or BOM is as suspect as one inside.
  if (INVISIBLE.test(raw)) {
    const visible = raw.replace(INVISIBLES, "").replace(SPACES, "").trim();
    throw new ChatError(
      "E_BAD_USERNAME",
      visible === ""
        ? `${what} has no visible characters`
        : `${what} must not contain invisible, control or format characters`,
    );
  }
  const name = normalizeName(raw);
  const length = [...name].length;
  if (length === 0) throw new ChatError("E_BAD_USERNAME", `${what} is empty`);
  if (length > max) {
    throw new ChatError("E_BAD_USERNAME", `${what} is ${length} characters, the limit is ${max}`);
  }
  if (MARK_RUN.test(name)) {
    throw new ChatError("E_BAD_USERNAME", `${what} has too many combining marks in a row`);
  }
  if (isMixedScript(name)) {
    throw new ChatError(
      "E_BAD_USERNAME",
      `${what} mixes scripts that look alike (${[...scriptsOf(name)].join(" + ")}); use one`,
    );
  }
  if (isReservedName(name)) {
    throw new ChatError("E_RESERVED_NAME", `${what} "${name}" is reserved`);
  }
  return name;
}
