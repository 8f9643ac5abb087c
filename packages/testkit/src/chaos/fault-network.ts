/**
 * Probability of each fault per request while faults are on (each in [0, 1]; they are
 * drawn in this order and at most one applies).
 */
export interface FaultRates {
  /** The request never reaches the server. */
  readonly dropRequest: number
  /** The server handles the request; its response is lost. */
  readonly dropResponse: number
  /** The request reaches the server twice in a row; the device sees the second answer. */
  readonly duplicate: number
  /**
   * The request is held back and reaches the server later, after newer requests (the
   * device gives up on it, as after a timeout): a reordered, stale replay.
   */
  readonly delay: number
  /** One byte of the request body is flipped on the way (the digest must catch it). */
  readonly corruptRequest: number
  /** One byte of the response body is flipped on the way. */
  readonly corruptResponse: number
}

/** No faults at all. */
export const NO_FAULTS: FaultRates = {
  dropRequest: 0,
  dropResponse: 0,
  duplicate: 0,
  delay: 0,
  corruptRequest: 0,
  corruptResponse: 0,
}

/** What the network did, for the report of a run. */
export interface FaultCounts {
  requests: number
  partitioned: number
  dropRequest: number
  dropResponse: number
  duplicate: number
  delay: number
  corruptRequest: number
  corruptResponse: number
}

interface HeldRequest {
  readonly url: string
  readonly method: string
  readonly headers: Headers
  readonly body: Uint8Array
}

/**
 * An in-process network between devices and one server's fetch handler that drops,
 * duplicates, delays (reorders), corrupts and partitions, driven by a seeded random source
 * so that a run replays exactly.
 *
 * @remarks
 * Requests and responses keep their real bytes (encoding, gzip, `Content-Digest`); a
 * failure reaches the device as a rejected fetch, exactly as a reset connection would.
 */
export class FaultNetwork {
  readonly #server: (request: Request) => Promise<Response>
  readonly #random: () => number
  readonly #partitioned = new Set<string>()
  readonly #held: HeldRequest[] = []
  #rates: FaultRates
  readonly counts: FaultCounts = {
    requests: 0,
    partitioned: 0,
    dropRequest: 0,
    dropResponse: 0,
    duplicate: 0,
    delay: 0,
    corruptRequest: 0,
    corruptResponse: 0,
  }

  constructor(
    server: (request: Request) => Promise<Response>,
    options: { readonly random: () => number; readonly rates: FaultRates },
  ) {
    this.#server = server
    this.#random = options.random
    this.#rates = options.rates
  }

  /** Cuts `device` off the server (its requests fail) or reconnects it. */
  partition(device: string, cut: boolean): void {
    if (cut) this.#partitioned.add(device)
    else this.#partitioned.delete(device)
  }

  /** Sets the fault probabilities from now on. */
  setRates(rates: FaultRates): void {
    this.#rates = rates
  }

  /** Stops every fault and partition; held requests stay held until {@link deliverHeld}. */
  heal(): void {
    this.#rates = NO_FAULTS
    this.#partitioned.clear()
  }

  /** How many delayed requests wait for delivery. */
  get held(): number {
    return this.#held.length
  }

  /**
   * Delivers held requests to the server now, newest first (the most reordered), and
   * discards the answers: nobody waits for them any more.
   */
  async deliverHeld(): Promise<void> {
    while (this.#held.length > 0) {
      const held = this.#held.pop() as HeldRequest
      const response = await this.#server(rebuild(held, held.body))
      await response.arrayBuffer()
    }
  }

  /** The fetch function one device's transport uses. */
  fetchFor(device: string): (request: Request) => Promise<Response> {
    return async (request) => {
      this.counts.requests++
      if (this.#partitioned.has(device)) {
        this.counts.partitioned++
        throw new TypeError(`network partition: ${device} is cut off`)
      }
      const held: HeldRequest = {
        url: request.url,
        method: request.method,
        headers: new Headers(request.headers),
        body: new Uint8Array(await request.arrayBuffer()),
      }
      const fault = this.#draw()
      switch (fault) {
        case 'dropRequest':
          throw new TypeError('connection reset before the request was sent')
        case 'delay':
          this.#held.push(held)
          throw new TypeError('request timed out (it is still on its way)')
        case 'corruptRequest':
          return this.#server(rebuild(held, this.#flipByte(held.body)))
        case 'duplicate': {
          const first = await this.#server(rebuild(held, held.body))
          await first.arrayBuffer()
          return this.#server(rebuild(held, held.body))
        }
        case 'dropResponse': {
          const response = await this.#server(rebuild(held, held.body))
          await response.arrayBuffer()
          throw new TypeError('connection reset before the response arrived')
        }
        case 'corruptResponse': {
          const response = await this.#server(rebuild(held, held.body))
          const body = new Uint8Array(await response.arrayBuffer())
          return new Response(
            (body.length === 0
              ? body
              : this.#flipByte(body)) as Uint8Array<ArrayBuffer>,
            { status: response.status, headers: response.headers },
          )
        }
        case undefined:
          return this.#server(rebuild(held, held.body))
      }
    }
  }

  #draw(): keyof FaultRates | undefined {
    const x = this.#random()
    let threshold = 0
    for (const fault of Object.keys(this.#rates) as Array<keyof FaultRates>) {
      threshold += this.#rates[fault]
      if (x < threshold) {
        this.counts[fault]++
        return fault
      }
    }
    return undefined
  }

  #flipByte(body: Uint8Array): Uint8Array {
    const copy = body.slice()
    if (copy.length > 0) {
      const at = Math.floor(this.#random() * copy.length)
      copy[at] = (copy[at] as number) ^ 0x20
    }
    return copy
  }
}

function rebuild(held: HeldRequest, body: Uint8Array): Request {
  return new Request(held.url, {
    method: held.method,
    headers: held.headers,
    body: body.length === 0 ? null : (body as Uint8Array<ArrayBuffer>),
  })
}
