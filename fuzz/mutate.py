# -*- test-case-name: tests.test_fuzz_corpus -*-
"""A small byte mutator for the end-to-end fuzzer (``fuzz/e2e.py``).

libFuzzer mutates in-process inputs; against a running server there is no
coverage feedback, so :class:`Mutator` applies one to four of libFuzzer's
classic mutations to a valid message from the corpus: flip a bit, set a byte
to an interesting value, insert, delete, duplicate or swap a run of bytes,
truncate, or splice in part of another message.  Seeded, so a run can be
repeated with ``--seed``.
"""

from __future__ import annotations

import random

INTERESTING = (0x00, 0x01, 0x0D, 0x0E, 0x0F, 0x10, 0x7F, 0x80, 0xFE, 0xFF)


class Mutator:
    """Mutations of ``seeds`` (a list of valid messages)."""

    def __init__(self, seeds: list[bytes], seed: int = 0, max_length: int = 4096) -> None:
        if not seeds:
            raise ValueError("the mutator needs at least one seed")
        self.seeds = seeds
        self.random = random.Random(seed)
        self.max_length = max_length

    def valid(self) -> bytes:
        """One seed, unchanged."""
        return self.random.choice(self.seeds)

    def mutated(self) -> bytes:
        """One seed with one to four mutations."""
        data = bytearray(self.valid())
        for _ in range(self.random.randint(1, 4)):
            data = self._once(data)
        return bytes(data[: self.max_length])

    def coap_mutated(self) -> bytes:
        """A seed decoded as CoAP, one field changed, encoded again: always valid CoAP.

        Byte mutations mostly break the header, and the device port closes a
        connection on unparsable CoAP; these reach the parsers behind it.
        """
        from twisted_spark.coap.codec import CoapError, CoapMessage, decode

        try:
            message = decode(self.valid())
        except CoapError:
            return self.mutated()
        pick = self.random
        kind = pick.randrange(6)
        options = list(message.options)
        if kind == 0:
            message = message._replace(payload=self._bytes(message.payload))
        elif kind == 1 and options:
            index = pick.randrange(len(options))
            options[index] = (options[index][0], self._bytes(options[index][1])[:300])
        elif kind == 2:
            options.append((pick.choice((4, 11, 12, 14, 15, 23, 27, 60, pick.randrange(300))),
                            pick.randbytes(pick.randint(0, 6))))
        elif kind == 3 and options:
            del options[pick.randrange(len(options))]
        elif kind == 4:
            message = message._replace(code=pick.choice((0, 1, 2, 3, 4, 0x44, 0x45, 0x5F, 0x80,
                                                         0x84, 0x8D, pick.randrange(256))))
        else:
            message = message._replace(type=pick.randrange(4), token=pick.randbytes(
                pick.choice((0, 1, 1, 2, 8))), message_id=pick.randrange(0x10000))
        options.sort(key=lambda option: option[0])
        message = CoapMessage(*message[:4], tuple(options), message.payload)
        return message.encode()

    def _bytes(self, data: bytes) -> bytes:
        mutated = bytearray(data)
        for _ in range(self.random.randint(1, 3)):
            mutated = self._once(mutated)
        return bytes(mutated[: self.max_length])

    def _once(self, data: bytearray) -> bytearray:
        pick = self.random
        if not data:
            return bytearray(pick.randbytes(pick.randint(1, 8)))
        position = pick.randrange(len(data))
        kind = pick.randrange(9)
        if kind == 0:
            data[position] ^= 1 << pick.randrange(8)
        elif kind == 1:
            data[position] = pick.choice(INTERESTING)
        elif kind == 2:
            data[position:position] = pick.randbytes(pick.randint(1, 16))
        elif kind == 3:
            del data[position : position + pick.randint(1, 16)]
        elif kind == 4:
            run = data[position : position + pick.randint(1, 64)]
            data[position:position] = run * pick.randint(1, 8)
        elif kind == 5:
            other = pick.randrange(len(data))
            data[position], data[other] = data[other], data[position]
        elif kind == 6:
            del data[position:]
        elif kind == 7:
            donor = pick.choice(self.seeds)
            start = pick.randrange(len(donor)) if donor else 0
            data[position:] = donor[start:]
        else:
            data[position] = pick.randrange(256)
        return data
