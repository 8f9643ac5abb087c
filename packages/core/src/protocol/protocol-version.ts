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
 * - 1: first version: sync (push + pull in one round trip), ack, digest, conflicts, health;
 *   JSON (base64 vectors) and MessagePack (bin vectors).
 *
 * @public
 */
export const PROTOCOL_VERSION = 1
