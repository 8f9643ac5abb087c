/**
 * The version of the sync wire protocol (`docs/PROTOCOL.md`) that this build speaks. Every
 * message carries it; a server answers a message of another version with
 * `protocol_mismatch`.
 *
 * @remarks
 * Bump it with every change to the shape of a message, and add a line below. The test
 * `protocol-schema.test.ts` pins a hash of the message schemas to this number, so a schema
 * change without a bump fails CI.
 *
 * History:
 * - 1: first version: sync (push + pull in one round trip, `fullResync`, `lastLsn`), ack,
 *   digest, conflicts, health; JSON (base64 vectors) and MessagePack (bin vectors). Its
 *   hash was last set before v1 first shipped; from now on a change means version 2.
 * - 2: a sync response's `results` lists only the pushed ops whose outcome is not
 *   `applied`; every other op up to `appliedThroughLsn` was applied as pushed (about 60
 *   bytes less per pushed document on the wire).
 *
 * @public
 */
export const PROTOCOL_VERSION = 2
