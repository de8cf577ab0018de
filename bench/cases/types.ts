/**
 * One benchmark case: does its operation `n` times and returns something derived from every result (a count
 * or a checksum), so the work cannot be optimised away. It throws if an operation gives a wrong answer (e.g.
 * a signature that does not verify), so a fast failure path is never mistaken for a fast success.
 * `params` carries extra query parameters (e.g. `batch`).
 */
export type BenchCase = (n: number, params: URLSearchParams) => number | Promise<number>;
