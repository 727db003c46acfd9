def count_parameters(): pass
class ParameterReport: pass
