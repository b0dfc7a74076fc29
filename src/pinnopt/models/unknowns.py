"""A network together with the trainable physical parameters of an inverse problem."""

from __future__ import annotations

from torch import Tensor, nn

from pinnopt.derivatives import Jet, jet_of_input


class WithUnknowns(nn.Module):
    """u(x) = N(x), with physical parameters (ν, a diffusion coefficient, …) as parameters.

    The values in ``unknowns`` become ``nn.Parameter`` s of this module, so they are
    part of θ for every optimizer, are saved in ``state_dict`` and appear in the
    Jacobian that Gauss–Newton forms. Residuals read them from the jet
    (``u.unknown("nu")``, set by ``Term.evaluate`` from :attr:`unknowns`). Takes the raw
    coordinates: put it outermost.
    """

    def __init__(self, network: nn.Module, unknowns: dict[str, Tensor]) -> None:
        super().__init__()
        if not unknowns:
            raise ValueError("unknowns: give at least one physical parameter")
        self.network = network
        p = next(network.parameters())
        self.unknowns = nn.ParameterDict(
            {k: nn.Parameter(v.detach().to(p.dtype).clone()) for k, v in unknowns.items()}
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    def forward_jet(self, z: Jet) -> Jet:
        return jet_of_input(self.network, z)
