"""ICT fits that are not the network: the ICT face fitted to a target (`face_fit`) and the template prior, the ICT
expression basis carried to the target through it across its openings (`template`)."""
from nfs.prior.face_fit import FaceFit, fit_ict_face, fit_ict_identity, fit_ict_weights
from nfs.prior.template import opening_sides, template_expression_basis

__all__ = ["FaceFit", "fit_ict_face", "fit_ict_identity", "fit_ict_weights", "opening_sides",
           "template_expression_basis"]
