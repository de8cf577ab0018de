/**
 * The search term of POST /search as an SQLite FTS5 query (durable-objects/room/search-index.ts).
 *
 * The term is read the way the reference server reads it: words (letters, digits, `_`, `-`), "quoted
 * phrases", `-word` to exclude a word, `or` between alternatives, everything else implicitly ANDed; a few
 * English stop words are skipped outside phrases. Each word and phrase is passed to FTS5 quoted, so nothing a user types
 * can be FTS5 syntax. The keys become an FTS5 column filter.
 */

export const SEARCH_KEYS = { "content.body": "body", "content.name": "name", "content.topic": "topic" } as const;
export type SearchKey = keyof typeof SEARCH_KEYS;
export const ALL_SEARCH_KEYS = Object.keys(SEARCH_KEYS) as SearchKey[];

const STOP_WORDS = new Set(["the", "a", "you", "me", "and", "but"]);

type Token = { kind: "term"; words: string[] } | { kind: "not" } | { kind: "or" };

function words(text: string): string[] {
  return (text.match(/[\p{L}\p{N}_-]+/gu) ?? []).filter((w) => /[\p{L}\p{N}]/u.test(w));
}

function tokenize(term: string): Token[] {
  const tokens: Token[] = [];
  term.split('"').forEach((part, i) => {
    if (i % 2 === 1) {
      // Stop words stay in phrases: FTS5 phrases match adjacent words.
      const phrase = words(part);
      if (phrase.length) tokens.push({ kind: "term", words: phrase });
      return;
    }
    for (const raw of part.match(/[\p{L}\p{N}_-]+/gu) ?? []) {
      let w = raw;
      if (w.startsWith("-")) {
        tokens.push({ kind: "not" });
        w = w.replace(/^-+/, "");
      }
      if (w.toLowerCase() === "or") tokens.push({ kind: "or" });
      else if (/[\p{L}\p{N}]/u.test(w) && !STOP_WORDS.has(w.toLowerCase())) tokens.push({ kind: "term", words: [w] });
    }
  });
  return tokens;
}

const quote = (words: string[]) => `"${words.join(" ").replace(/"/g, '""')}"`;

/**
 * The FTS5 MATCH expression for `term` over `keys`, and the words to highlight; `match` is null when the term
 * has nothing searchable (no results, not an error).
 */
export function buildMatch(term: string, keys: readonly SearchKey[]): { match: string | null; highlights: string[] } {
  const tokens = tokenize(term);
  const parts: string[] = [];
  const highlights: string[] = [];
  let pending: "NOT" | "OR" | null = null;
  for (const t of tokens) {
    if (t.kind === "not") {
      pending = "NOT";
      continue;
    }
    if (t.kind === "or") {
      if (pending !== "NOT") pending = "OR";
      continue;
    }
    if (pending === "NOT") {
      // FTS5's NOT is binary: an exclusion needs something before it to exclude from.
      if (parts.length) parts.push("NOT", quote(t.words));
    } else {
      if (parts.length) parts.push(pending === "OR" ? "OR" : "AND");
      parts.push(quote(t.words));
      highlights.push(t.words.join(" "));
    }
    pending = null;
  }
  if (parts.length === 0 || keys.length === 0) return { match: null, highlights: [] };
  const columns = [...new Set(keys.map((k) => SEARCH_KEYS[k]))].join(" ");
  return { match: `{${columns}} : (${parts.join(" ")})`, highlights };
}
