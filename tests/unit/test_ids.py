"""Component ids: one format, parsed back exactly, anything else refused with the forms expected."""

from __future__ import annotations

import pytest

from paydar.model.ids import ComponentId, Kind, controller_id, gateway_id, link_id, node_id, prober_id


@pytest.mark.parametrize(("text", "parsed"), [
    (node_id("tax-2", "north"), ComponentId(Kind.NODE, region="north", service="tax-2")),
    (gateway_id("north"), ComponentId(Kind.GATEWAY, region="north")),
    (prober_id("south"), ComponentId(Kind.PROBER, region="south")),
    (controller_id("east"), ComponentId(Kind.CONTROLLER, region="east")),
    (link_id("east", "west"), ComponentId(Kind.LINK, region="east", target="west")),
    ("vault", ComponentId(Kind.VAULT)),
])
def test_every_kind_of_id_parses_back_to_what_formatted_it(text: str, parsed: ComponentId) -> None:
    assert ComponentId.parse(text) == parsed
    assert str(parsed) == text


@pytest.mark.parametrize("text", ["", "node", "node.1101", "node.1101.tehran.extra", "gateway.", "gateway.a.b",
                                  "operator", "vault.x", "link.a", "citizen.tehran", "node..tehran"])
def test_anything_else_is_refused_naming_the_expected_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a component id: expected node\.<service>\.<region>"):
        ComponentId.parse(text)
